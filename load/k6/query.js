// Query load on `apex-ingest serve` (POST /v1/query): `load/query_latency.rs`
// runs this over a million stored records with ingest running beside it.
//
// Scenarios, each at a constant arrival rate for HOLD (SCENARIOS picks some):
//   structured  position, late shipments, events near a place, everything
//               about a PRO (PROS: comma-separated PRO numbers that exist)
//   hybrid      questions by meaning (vector and full-text, fused)
//   cached      one question asked again and again; only the answers the
//               cache held (`x-apex-cache: hit`) count in cache_hit_ms
// Latencies are of answered questions (200); those refused at once as
// overloaded (503, serve.max_in_flight) are counted as shed.
// Environment: API_URL, TOKEN, AS_OF (every question is asked as of it),
// TRUCKS (how many trucks the fleet has), PROS, HOLD, STRUCTURED_RATE,
// HYBRID_RATE, CACHED_RATE, SCENARIOS, SUMMARY (path of the JSON summary).
// Thresholds: p95 under 50 ms (structured), 150 ms (hybrid), 5 ms (cache
// hits); under 1 % failed. A failed threshold exits 99.

import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const url = `${__ENV.API_URL || 'http://127.0.0.1:8090'}/v1/query`;
const asOf = __ENV.AS_OF;
const trucks = parseInt(__ENV.TRUCKS || '100', 10);
const pros = (__ENV.PROS || '').split(',').filter((p) => p.length > 0);
const hold = __ENV.HOLD || '60s';
const wanted = (__ENV.SCENARIOS || 'structured,hybrid,cached').split(',');
const headers = { 'content-type': 'application/json', authorization: `Bearer ${__ENV.TOKEN}` };

const structured = new Trend('structured_ms', true);
const hybrid = new Trend('hybrid_ms', true);
const cacheHit = new Trend('cache_hit_ms', true);
const cacheHits = new Counter('cache_hits');
const cacheMisses = new Counter('cache_misses');
const empty = new Counter('empty_answers');
const shed = new Counter('shed');

const MEANINGS = [
  'freight invoice amount due',
  'the carrier accepted the load tender',
  'shipment delivered to the consignee',
  'reefer temperature problem',
  'driver went off duty',
  'truck arrived at the distribution center',
  'appointment for delivery',
  'carrier declined the tender',
];

function scenario(exec, rate) {
  return {
    executor: 'constant-arrival-rate',
    exec,
    rate,
    timeUnit: '1s',
    duration: hold,
    preAllocatedVUs: 20,
    maxVUs: 200,
  };
}

const all = {
  structured: scenario('structuredQuestion', parseInt(__ENV.STRUCTURED_RATE || '20', 10)),
  hybrid: scenario('hybridQuestion', parseInt(__ENV.HYBRID_RATE || '10', 10)),
  cached: scenario('cachedQuestion', parseInt(__ENV.CACHED_RATE || '20', 10)),
};
const scenarios = {};
for (const name of wanted) {
  scenarios[name] = all[name];
}
const thresholds = { http_req_failed: ['rate<0.01'] };
if (wanted.includes('structured')) {
  thresholds.structured_ms = ['p(95)<50'];
  // A threshold on each intent's sub-metric also puts its figures in the summary.
  for (const intent of ['position', 'late', 'events', 'about']) {
    thresholds[`structured_ms{intent:${intent}}`] = ['p(95)<50'];
  }
}
if (wanted.includes('hybrid')) thresholds.hybrid_ms = ['p(95)<150'];
if (wanted.includes('cached')) thresholds.cache_hit_ms = ['p(95)<5'];

export const options = {
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max', 'count'],
  scenarios,
  thresholds,
};

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// The answered question's response, or null: refused at once as overloaded
// (serve.max_in_flight), counted as shed, or failed (http_req_failed).
function ask(question) {
  const res = http.post(url, JSON.stringify({ question, as_of: asOf, k: 10 }), { headers });
  const ok = check(res, { 'answered 200': (r) => r.status === 200 });
  if (!ok) {
    if (res.status === 503 && String(res.json('error')).includes('max_in_flight')) shed.add(1);
    return null;
  }
  if (res.json('hits').length === 0) empty.add(1);
  return res;
}

export function structuredQuestion() {
  const truck = 1 + Math.floor(Math.random() * trucks);
  const questions = [
    `where was truck ${truck} at 14:00 yesterday`,
    'which shipments are late yesterday',
    'harsh braking near Dallas last week',
    `everything about PRO ${pick(pros).replace(/^PRO/, '')}`,
  ];
  const intent = Math.floor(Math.random() * questions.length);
  const res = ask(questions[intent]);
  if (res) structured.add(res.timings.duration, { intent: ['position', 'late', 'events', 'about'][intent] });
}

export function hybridQuestion() {
  const res = ask(pick(MEANINGS));
  if (res) hybrid.add(res.timings.duration);
}

export function cachedQuestion() {
  const res = ask('freight invoice amount due');
  if (!res) return;
  if (res.headers['X-Apex-Cache'] === 'hit') {
    cacheHits.add(1);
    cacheHit.add(res.timings.duration);
  } else {
    cacheMisses.add(1);
  }
}

function trend(data, name) {
  const m = data.metrics[name];
  return m ? { med: m.values.med, p95: m.values['p(95)'], p99: m.values['p(99)'], count: m.values.count } : null;
}

function count(data, name) {
  const m = data.metrics[name];
  return m ? m.values.count : 0;
}

export function handleSummary(data) {
  const summary = {
    structured: trend(data, 'structured_ms'),
    position: trend(data, 'structured_ms{intent:position}'),
    late: trend(data, 'structured_ms{intent:late}'),
    events: trend(data, 'structured_ms{intent:events}'),
    about: trend(data, 'structured_ms{intent:about}'),
    hybrid: trend(data, 'hybrid_ms'),
    cache_hit: trend(data, 'cache_hit_ms'),
    cache_hits: count(data, 'cache_hits'),
    cache_misses: count(data, 'cache_misses'),
    empty_answers: count(data, 'empty_answers'),
    shed: count(data, 'shed'),
    requests: count(data, 'http_reqs'),
    rate: data.metrics.http_reqs ? data.metrics.http_reqs.values.rate : 0,
    failed_rate: data.metrics.http_req_failed ? data.metrics.http_req_failed.values.rate : 0,
  };
  return { [__ENV.SUMMARY]: JSON.stringify(summary) };
}
