// Webhook load on `apex-ingest edge`: Samsara, Front and Turvo requests signed
// exactly as each provider signs them, ramped to RATE requests/s and held for
// HOLD. Every event id is unique, so every 200 must be one message in its
// topic; `load/webhooks.rs` runs this, then counts the topics.
//
// Environment: EDGE_URL, RATE, RAMP, HOLD, SAMSARA_SECRET (base64, as in
// Samsara's portal), FRONT_SECRET, TURVO_TOKEN, SUMMARY (path of the JSON summary).
// Thresholds: no failed request, p99 under 100 ms; a failed threshold exits 99.

import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const url = __ENV.EDGE_URL || 'http://127.0.0.1:8088';
const rate = parseInt(__ENV.RATE || '3000', 10);
const samsaraKey = encoding.b64decode(__ENV.SAMSARA_SECRET || 'dGVzdC1zZWNyZXQ=');
const frontSecret = __ENV.FRONT_SECRET || 'front-secret';
const turvoToken = __ENV.TURVO_TOKEN || 'turvo-token';

const accepted = {
  samsara: new Counter('accepted_samsara'),
  front: new Counter('accepted_front'),
  turvo: new Counter('accepted_turvo'),
};
const duplicates = new Counter('duplicates');

export const options = {
  discardResponseBodies: false,
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    webhooks: {
      executor: 'ramping-arrival-rate',
      startRate: Math.max(1, Math.floor(rate / 10)),
      timeUnit: '1s',
      preAllocatedVUs: 200,
      maxVUs: 1000,
      stages: [
        { target: rate, duration: __ENV.RAMP || '10s' },
        { target: rate, duration: __ENV.HOLD || '30s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    http_req_duration: ['p(99)<100'],
    checks: ['rate==1'],
  },
};

function samsara(id) {
  const body = JSON.stringify({
    eventId: id,
    eventTime: new Date().toISOString(),
    eventType: 'VehicleLocation',
    orgId: 42,
    data: {
      vehicle: { id: `v-${__VU % 500}`, name: `Truck ${__VU % 500}` },
      location: { time: new Date().toISOString(), latitude: 35.1495, longitude: -90.049, speedMilesPerHour: 55 },
    },
  });
  const ts = Math.floor(Date.now() / 1000).toString();
  const signature = 'v1=' + crypto.hmac('sha256', samsaraKey, `v1:${ts}:${body}`, 'hex');
  return { body, headers: { 'X-Samsara-Signature': signature, 'X-Samsara-Timestamp': ts } };
}

function front(id) {
  const body = JSON.stringify({
    type: 'inbound',
    authorization: { id: 'cmp_load' },
    payload: {
      id,
      type: 'inbound',
      emitted_at: Date.now() / 1000,
      conversation: { id: `cnv_${__VU}`, subject: `Load ${__ITER} SCAC ABCD`, status: 'unassigned' },
    },
  });
  const ts = Date.now().toString();
  const signature = crypto.hmac('sha256', frontSecret, `${ts}:${body}`, 'base64');
  return { body, headers: { 'x-front-signature': signature, 'x-front-request-timestamp': ts } };
}

function turvo(id) {
  // Turvo sends no event id: the edge keys by the body's digest, which the id keeps unique.
  const body = JSON.stringify({
    tenantId: 'load',
    eventName: 'SHIPMENT_STATUS_UPDATE',
    eventTime: new Date().toISOString(),
    eventPayload: { id, customId: `SH-${__VU}`, status: { code: { key: '2106', value: 'En route' } } },
  });
  return { body, headers: { Authorization: turvoToken } };
}

const providers = { samsara, front, turvo };

export default function () {
  // 80 % Samsara, 10 % Front, 10 % Turvo.
  const pick = __ITER % 10;
  const provider = pick < 8 ? 'samsara' : pick === 8 ? 'front' : 'turvo';
  const id = `${provider}-${__VU}-${__ITER}-${Date.now()}`;
  const { body, headers } = providers[provider](id);
  headers['Content-Type'] = 'application/json';
  const res = http.post(`${url}/webhooks/${provider}`, body, { headers, tags: { provider } });
  const ok = check(res, { 'status is 200': (r) => r.status === 200 });
  if (ok && res.body.includes('"accepted"')) {
    accepted[provider].add(1);
  } else if (ok) {
    duplicates.add(1);
  }
}

export function handleSummary(data) {
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const summary = {
    accepted: { samsara: count('accepted_samsara'), front: count('accepted_front'), turvo: count('accepted_turvo') },
    duplicates: count('duplicates'),
    requests: count('http_reqs'),
    failed_rate: data.metrics.http_req_failed.values.rate,
    p99_ms: data.metrics.http_req_duration.values['p(99)'],
    p95_ms: data.metrics.http_req_duration.values['p(95)'],
    med_ms: data.metrics.http_req_duration.values.med,
    rate: data.metrics.http_reqs.values.rate,
  };
  const out = { stdout: JSON.stringify(summary) + '\n' };
  if (__ENV.SUMMARY) {
    out[__ENV.SUMMARY] = JSON.stringify(summary);
  }
  return out;
}
