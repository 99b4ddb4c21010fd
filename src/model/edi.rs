//! ANSI X12 interchanges: ISA…IEA holding groups GS…GE of transactions ST…SE.
//!
//! Separators come from the ISA segment. The envelope is validated in full
//! (control numbers, group and transaction counts, SE segment counts); any
//! envelope error rejects the whole interchange, as a TA1/999 would, so one
//! raw message is either entirely records or entirely one dead letter.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use super::poison::PoisonReason;

/// A party from an N1 loop, with its N4 location when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// N101 entity identifier code: SH shipper, CN consignee, BT bill-to, ...
    pub role: String,
    pub name: String,
    pub id: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// One status detail (LX loop) of a 214.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDetail {
    /// AT701 shipment status code (X6 en route, D1 delivered, AF departed, ...).
    pub status_code: String,
    pub reason_code: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub equipment_scac: Option<String>,
    pub equipment_number: Option<String>,
    pub weight: Option<f64>,
    pub lading_quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub line: String,
    pub description: Option<String>,
    pub weight: Option<f64>,
    pub quantity: Option<f64>,
    pub rate: Option<f64>,
    pub charge_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "set")]
pub enum EdiContent {
    /// 214 Transportation Carrier Shipment Status.
    ShipmentStatus {
        pro: Option<String>,
        bol: Option<String>,
        scac: Option<String>,
        references: Vec<(String, String)>,
        parties: Vec<Party>,
        statuses: Vec<StatusDetail>,
    },
    /// 210 Motor Carrier Freight Details and Invoice.
    FreightInvoice {
        invoice_number: String,
        pro: Option<String>,
        bol: Option<String>,
        scac: Option<String>,
        payment_method: Option<String>,
        amount_due_cents: Option<i64>,
        references: Vec<(String, String)>,
        parties: Vec<Party>,
        lines: Vec<InvoiceLine>,
        total_weight: Option<f64>,
        total_charge_cents: Option<i64>,
    },
    /// 204 Motor Carrier Load Tender (header level).
    LoadTender {
        scac: Option<String>,
        shipment_id: String,
        payment_method: Option<String>,
        purpose: Option<String>,
        references: Vec<(String, String)>,
        parties: Vec<Party>,
        stops: usize,
    },
    /// 990 Response to a Load Tender (header level).
    TenderResponse { scac: Option<String>, shipment_id: String, action: Option<String> },
    /// A transaction set this version does not model; its segment ids are kept.
    Other { segment_ids: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdiTransaction {
    pub sender_id: String,
    pub receiver_id: String,
    pub interchange_control: String,
    pub group_control: String,
    pub functional_id: String,
    pub set_id: String,
    pub set_control: String,
    pub occurred_at: DateTime<Utc>,
    pub content: EdiContent,
}

impl EdiTransaction {
    /// ISA13 + GS06 + ST02 + sender id, as the issue defines the natural key.
    pub fn natural_key(&self) -> String {
        format!("{}|{}|{}|{}", self.interchange_control, self.group_control, self.set_control, self.sender_id)
    }

    /// The shipment this transaction speaks about: PRO, else BOL, else the shipment id.
    pub fn shipment_ref(&self) -> Option<&str> {
        match &self.content {
            EdiContent::ShipmentStatus { pro, bol, .. } | EdiContent::FreightInvoice { pro, bol, .. } => {
                pro.as_deref().or(bol.as_deref())
            }
            EdiContent::LoadTender { shipment_id, .. } | EdiContent::TenderResponse { shipment_id, .. } => {
                Some(shipment_id)
            }
            EdiContent::Other { .. } => None,
        }
    }

    pub fn scac(&self) -> Option<&str> {
        match &self.content {
            EdiContent::ShipmentStatus { scac, .. }
            | EdiContent::FreightInvoice { scac, .. }
            | EdiContent::LoadTender { scac, .. }
            | EdiContent::TenderResponse { scac, .. } => scac.as_deref(),
            EdiContent::Other { .. } => None,
        }
    }

    pub fn parties(&self) -> &[Party] {
        match &self.content {
            EdiContent::ShipmentStatus { parties, .. }
            | EdiContent::FreightInvoice { parties, .. }
            | EdiContent::LoadTender { parties, .. } => parties,
            _ => &[],
        }
    }

    pub fn summary(&self) -> String {
        let head = format!("edi {} from {}", self.set_id, self.sender_id);
        let body = match &self.content {
            EdiContent::ShipmentStatus { pro, bol, statuses, .. } => {
                let last = statuses.last();
                format!(
                    "shipment status pro {} bol {} status {} at {} {}",
                    pro.as_deref().unwrap_or("-"),
                    bol.as_deref().unwrap_or("-"),
                    last.map(|s| s.status_code.as_str()).unwrap_or("-"),
                    last.and_then(|s| s.city.as_deref()).unwrap_or(""),
                    last.and_then(|s| s.state.as_deref()).unwrap_or("")
                )
            }
            EdiContent::FreightInvoice { invoice_number, pro, amount_due_cents, .. } => format!(
                "freight invoice {invoice_number} pro {} amount due {:.2} USD",
                pro.as_deref().unwrap_or("-"),
                amount_due_cents.unwrap_or(0) as f64 / 100.0
            ),
            EdiContent::LoadTender { shipment_id, stops, .. } => {
                format!("load tender shipment {shipment_id} with {stops} stops")
            }
            EdiContent::TenderResponse { shipment_id, action, .. } => {
                format!("tender response shipment {shipment_id} action {}", action.as_deref().unwrap_or("-"))
            }
            EdiContent::Other { segment_ids } => format!("segments {}", segment_ids.join(" ")),
        };
        let parties: Vec<&str> = self.parties().iter().map(|p| p.name.as_str()).collect();
        format!("{head} {body} {}", parties.join(" ")).split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// One segment, split into elements; `el(n)` is X12's 1-based element n.
struct Segment<'a> {
    elements: Vec<&'a str>,
}

impl<'a> Segment<'a> {
    fn id(&self) -> &'a str {
        self.elements[0]
    }

    /// Element n (1-based), trimmed; `None` when absent or blank.
    fn el(&self, n: usize) -> Option<&'a str> {
        self.elements.get(n).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn owned(&self, n: usize) -> Option<String> {
        self.el(n).map(str::to_owned)
    }

    fn required(&self, n: usize) -> Result<&'a str, PoisonReason> {
        self.el(n).ok_or_else(|| PoisonReason::EdiEnvelope(format!("{}{:02} is missing", self.id(), n)))
    }
}

struct Separators {
    element: char,
    segment: char,
}

fn read_separators(text: &str) -> Result<Separators, PoisonReason> {
    if !text.starts_with("ISA") {
        return Err(PoisonReason::EdiSyntax("interchange does not start with an ISA segment".into()));
    }
    let element =
        text[3..].chars().next().ok_or_else(|| PoisonReason::EdiSyntax("ISA segment is truncated".into()))?;
    // ISA16 (component separator) follows the 16th element separator; the
    // segment terminator is the character right after it.
    let (sixteenth, _) = text
        .char_indices()
        .filter(|&(_, c)| c == element)
        .nth(15)
        .ok_or_else(|| PoisonReason::EdiSyntax("ISA segment has fewer than 16 elements".into()))?;
    let mut after = text[sixteenth + element.len_utf8()..].chars();
    let _component = after.next();
    let segment =
        after.next().ok_or_else(|| PoisonReason::EdiSyntax("ISA segment has no terminator".into()))?;
    if segment == element || segment.is_alphanumeric() {
        return Err(PoisonReason::EdiSyntax(format!("implausible segment terminator {segment:?} in ISA")));
    }
    Ok(Separators { element, segment })
}

fn split_segments(text: &str) -> Result<Vec<Segment<'_>>, PoisonReason> {
    let sep = read_separators(text)?;
    Ok(text
        .split(sep.segment)
        .map(|s| s.trim_matches(|c: char| c == '\r' || c == '\n' || c == ' '))
        .filter(|s| !s.is_empty())
        .map(|s| Segment { elements: s.split(sep.element).collect() })
        .collect())
}

fn parse_date_time(date: Option<&str>, time: Option<&str>) -> Option<DateTime<Utc>> {
    let date = date?;
    let d = match date.len() {
        8 => NaiveDate::parse_from_str(date, "%Y%m%d").ok()?,
        6 => NaiveDate::parse_from_str(date, "%y%m%d").ok()?,
        _ => return None,
    };
    let t = time.and_then(|t| NaiveTime::parse_from_str(t.get(..4)?, "%H%M").ok()).unwrap_or(NaiveTime::MIN);
    Some(NaiveDateTime::new(d, t).and_utc())
}

fn cents(s: Option<&str>) -> Option<i64> {
    s.and_then(|v| v.parse::<i64>().ok())
}

fn number(s: Option<&str>) -> Option<f64> {
    s.and_then(|v| v.parse::<f64>().ok())
}

/// Parses an interchange into its transactions, validating the envelope.
pub fn parse_interchange(text: &str) -> Result<Vec<EdiTransaction>, PoisonReason> {
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let segments = split_segments(text)?;
    let isa = &segments[0];
    if isa.elements.len() != 17 {
        return Err(PoisonReason::EdiSyntax(format!(
            "ISA has {} elements, expected 16",
            isa.elements.len() - 1
        )));
    }
    let sender_id = isa.required(6)?.to_owned();
    let receiver_id = isa.required(8)?.to_owned();
    let isa_control = isa.required(13)?.to_owned();

    let iea = segments
        .last()
        .filter(|s| s.id() == "IEA")
        .ok_or_else(|| PoisonReason::EdiEnvelope("interchange does not end with IEA".into()))?;
    if iea.el(2) != Some(isa_control.as_str()) {
        return Err(PoisonReason::EdiEnvelope(format!(
            "IEA02 {:?} does not match ISA13 {isa_control:?}",
            iea.el(2).unwrap_or("")
        )));
    }

    let mut transactions = Vec::new();
    let mut groups = 0usize;
    let body = &segments[1..segments.len() - 1];
    let mut i = 0;
    while i < body.len() {
        let gs = &body[i];
        if gs.id() != "GS" {
            return Err(PoisonReason::EdiEnvelope(format!(
                "expected GS, found {} at segment {}",
                gs.id(),
                i + 2
            )));
        }
        groups += 1;
        let ctx = GroupContext {
            sender_id: &sender_id,
            receiver_id: &receiver_id,
            interchange_control: &isa_control,
            functional_id: gs.required(1)?,
            group_control: gs.required(6)?,
            group_time: parse_date_time(gs.el(4), gs.el(5)),
        };
        i += 1;
        let mut sets = 0usize;
        loop {
            let seg = body
                .get(i)
                .ok_or_else(|| PoisonReason::EdiEnvelope(format!("group {} has no GE", ctx.group_control)))?;
            match seg.id() {
                "GE" => break,
                "ST" => {
                    let end =
                        body[i..].iter().position(|s| s.id() == "SE").map(|p| i + p).ok_or_else(|| {
                            PoisonReason::EdiEnvelope(format!(
                                "transaction {} has no SE",
                                seg.el(2).unwrap_or("?")
                            ))
                        })?;
                    transactions.push(parse_transaction(&ctx, &body[i..=end])?);
                    sets += 1;
                    i = end + 1;
                }
                other => {
                    return Err(PoisonReason::EdiEnvelope(format!(
                        "expected ST or GE in group {}, found {other}",
                        ctx.group_control
                    )));
                }
            }
        }
        let ge = &body[i];
        if ge.el(2) != Some(ctx.group_control) {
            return Err(PoisonReason::EdiEnvelope(format!(
                "GE02 {:?} does not match GS06 {:?}",
                ge.el(2).unwrap_or(""),
                ctx.group_control
            )));
        }
        if ge.el(1) != Some(sets.to_string().as_str()) {
            return Err(PoisonReason::EdiEnvelope(format!(
                "GE01 says {} transactions, group {} has {sets}",
                ge.el(1).unwrap_or(""),
                ctx.group_control
            )));
        }
        i += 1;
    }
    if iea.el(1) != Some(groups.to_string().as_str()) {
        return Err(PoisonReason::EdiEnvelope(format!(
            "IEA01 says {} groups, interchange has {groups}",
            iea.el(1).unwrap_or("")
        )));
    }
    if transactions.is_empty() {
        return Err(PoisonReason::EdiEnvelope("interchange holds no transactions".into()));
    }
    Ok(transactions)
}

struct GroupContext<'a> {
    sender_id: &'a str,
    receiver_id: &'a str,
    interchange_control: &'a str,
    functional_id: &'a str,
    group_control: &'a str,
    group_time: Option<DateTime<Utc>>,
}

fn parse_transaction(ctx: &GroupContext<'_>, segs: &[Segment<'_>]) -> Result<EdiTransaction, PoisonReason> {
    let st = &segs[0];
    let se = &segs[segs.len() - 1];
    let set_id = st.required(1)?.to_owned();
    let set_control = st.required(2)?.to_owned();
    if se.el(2) != Some(set_control.as_str()) {
        return Err(PoisonReason::EdiEnvelope(format!(
            "SE02 {:?} does not match ST02 {set_control:?}",
            se.el(2).unwrap_or("")
        )));
    }
    if se.el(1) != Some(segs.len().to_string().as_str()) {
        return Err(PoisonReason::EdiEnvelope(format!(
            "SE01 says {} segments, transaction {set_control} has {}",
            se.el(1).unwrap_or(""),
            segs.len()
        )));
    }
    let inner = &segs[1..segs.len() - 1];
    let content = match set_id.as_str() {
        "214" => parse_214(inner)?,
        "210" => parse_210(inner)?,
        "204" => parse_204(inner)?,
        "990" => parse_990(inner)?,
        _ => EdiContent::Other { segment_ids: inner.iter().map(|s| s.id().to_owned()).collect() },
    };
    let occurred_at = match &content {
        EdiContent::ShipmentStatus { statuses, .. } => statuses.iter().find_map(|s| s.at),
        _ => None,
    }
    .or(ctx.group_time)
    .ok_or_else(|| PoisonReason::EdiEnvelope("GS04/GS05 date and time are not valid".into()))?;
    Ok(EdiTransaction {
        sender_id: ctx.sender_id.to_owned(),
        receiver_id: ctx.receiver_id.to_owned(),
        interchange_control: ctx.interchange_control.to_owned(),
        group_control: ctx.group_control.to_owned(),
        functional_id: ctx.functional_id.to_owned(),
        set_id,
        set_control,
        occurred_at,
        content,
    })
}

/// Collects N1 parties (with N4 locations) and L11/N9 references, which several sets share.
#[derive(Default)]
struct Common {
    parties: Vec<Party>,
    references: Vec<(String, String)>,
}

impl Common {
    /// Takes the segment if it is one of the shared ones; says whether it did.
    fn take(&mut self, seg: &Segment<'_>) -> bool {
        match seg.id() {
            "N1" => self.parties.push(Party {
                role: seg.owned(1).unwrap_or_default(),
                name: seg.owned(2).unwrap_or_default(),
                id: seg.owned(4),
                city: None,
                state: None,
                postal_code: None,
                country: None,
            }),
            "N4" => {
                if let Some(p) = self.parties.last_mut() {
                    p.city = seg.owned(1);
                    p.state = seg.owned(2);
                    p.postal_code = seg.owned(3);
                    p.country = seg.owned(4);
                }
            }
            // L11 is value*qualifier, N9 is qualifier*value.
            "L11" => {
                if let (Some(v), Some(q)) = (seg.el(1), seg.el(2)) {
                    self.references.push((q.to_owned(), v.to_owned()));
                }
            }
            "N9" => {
                if let (Some(q), Some(v)) = (seg.el(1), seg.el(2)) {
                    self.references.push((q.to_owned(), v.to_owned()));
                }
            }
            _ => return false,
        }
        true
    }

    fn reference(&self, qualifier: &str) -> Option<String> {
        self.references.iter().find(|(q, _)| q == qualifier).map(|(_, v)| v.clone())
    }
}

fn invalid(set: &str, what: &str) -> PoisonReason {
    PoisonReason::EdiTransaction(format!("{set}: {what}"))
}

fn parse_214(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
    let mut common = Common::default();
    let mut header = None;
    let mut statuses: Vec<StatusDetail> = Vec::new();
    for seg in segs {
        if common.take(seg) {
            continue;
        }
        match seg.id() {
            "B10" => header = Some((seg.owned(1), seg.owned(2), seg.owned(3))),
            "AT7" => statuses.push(StatusDetail {
                status_code: seg.owned(1).ok_or_else(|| invalid("214", "AT701 status code is missing"))?,
                reason_code: seg.owned(2),
                at: parse_date_time(seg.el(5), seg.el(6)),
                city: None,
                state: None,
                equipment_scac: None,
                equipment_number: None,
                weight: None,
                lading_quantity: None,
            }),
            "MS1" => {
                if let Some(s) = statuses.last_mut() {
                    s.city = seg.owned(1);
                    s.state = seg.owned(2);
                }
            }
            "MS2" => {
                if let Some(s) = statuses.last_mut() {
                    s.equipment_scac = seg.owned(1);
                    s.equipment_number = seg.owned(2);
                }
            }
            "AT8" => {
                if let Some(s) = statuses.last_mut() {
                    s.weight = number(seg.el(3));
                    s.lading_quantity = seg.el(4).and_then(|q| q.parse().ok());
                }
            }
            _ => {}
        }
    }
    let (pro, bol, scac) = header.ok_or_else(|| invalid("214", "B10 segment is missing"))?;
    if pro.is_none() && bol.is_none() {
        return Err(invalid("214", "B10 has neither a PRO (B1001) nor a BOL (B1002)"));
    }
    Ok(EdiContent::ShipmentStatus {
        pro,
        bol,
        scac,
        references: common.references,
        parties: common.parties,
        statuses,
    })
}

fn parse_210(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
    let mut common = Common::default();
    let mut b3 = None;
    let mut lines: Vec<InvoiceLine> = Vec::new();
    let mut totals = (None, None);
    for seg in segs {
        if common.take(seg) {
            continue;
        }
        match seg.id() {
            "B3" => b3 = Some((seg.owned(2), seg.owned(3), seg.owned(4), cents(seg.el(7)), seg.owned(11))),
            "LX" => lines.push(InvoiceLine {
                line: seg.owned(1).unwrap_or_default(),
                description: None,
                weight: None,
                quantity: None,
                rate: None,
                charge_cents: None,
            }),
            "L5" => {
                if let Some(l) = lines.last_mut() {
                    l.description = seg.owned(2);
                }
            }
            "L0" => {
                if let Some(l) = lines.last_mut() {
                    l.weight = number(seg.el(4));
                    l.quantity = number(seg.el(8));
                }
            }
            "L1" => {
                if let Some(l) = lines.last_mut() {
                    l.rate = number(seg.el(2));
                    l.charge_cents = cents(seg.el(4));
                }
            }
            "L3" => totals = (number(seg.el(1)), cents(seg.el(5))),
            _ => {}
        }
    }
    let (invoice, pro, payment_method, amount_due_cents, scac) =
        b3.ok_or_else(|| invalid("210", "B3 segment is missing"))?;
    let invoice_number = invoice.ok_or_else(|| invalid("210", "B302 invoice number is missing"))?;
    let bol = common.reference("BM");
    Ok(EdiContent::FreightInvoice {
        invoice_number,
        pro,
        bol,
        scac,
        payment_method,
        amount_due_cents,
        references: common.references,
        parties: common.parties,
        lines,
        total_weight: totals.0,
        total_charge_cents: totals.1,
    })
}

fn parse_204(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
    let mut common = Common::default();
    let mut b2 = None;
    let mut purpose = None;
    let mut stops = 0;
    for seg in segs {
        if common.take(seg) {
            continue;
        }
        match seg.id() {
            "B2" => b2 = Some((seg.owned(2), seg.owned(4), seg.owned(6))),
            "B2A" => purpose = seg.owned(1),
            "S5" => stops += 1,
            _ => {}
        }
    }
    let (scac, shipment_id, payment_method) = b2.ok_or_else(|| invalid("204", "B2 segment is missing"))?;
    Ok(EdiContent::LoadTender {
        scac,
        shipment_id: shipment_id.ok_or_else(|| invalid("204", "B204 shipment id is missing"))?,
        payment_method,
        purpose,
        references: common.references,
        parties: common.parties,
        stops,
    })
}

fn parse_990(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
    let b1 = segs.iter().find(|s| s.id() == "B1").ok_or_else(|| invalid("990", "B1 segment is missing"))?;
    Ok(EdiContent::TenderResponse {
        scac: b1.owned(1),
        shipment_id: b1.owned(2).ok_or_else(|| invalid("990", "B102 shipment id is missing"))?,
        action: b1.owned(4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = include_str!("../../tests/fixtures/samples/edi/214_two_shipments.x12");

    #[test]
    fn separators_come_from_isa() {
        let swapped = TWO.replace('*', "|").replace('~', "\n");
        let txs = parse_interchange(&swapped).unwrap();
        assert_eq!(txs.len(), 2);
        assert_eq!(txs[0].shipment_ref(), Some("PRO7731904"));
    }

    #[test]
    fn control_number_mismatch_is_envelope_error() {
        let bad = TWO.replace("IEA*1*000004711", "IEA*1*000004799");
        let err = parse_interchange(&bad).unwrap_err();
        assert_eq!(err.label(), "edi_envelope");
        assert!(err.to_string().contains("IEA02"), "{err}");
    }

    #[test]
    fn group_count_mismatch_is_envelope_error() {
        let bad = TWO.replace("GE*2*4711", "GE*3*4711");
        let err = parse_interchange(&bad).unwrap_err();
        assert!(err.to_string().contains("GE01 says 3"), "{err}");
    }

    #[test]
    fn missing_b10_is_transaction_error() {
        let bad = TWO.replace("B10*PRO7731905*BOL5528114*FXFE~", "").replace("SE*9*0002", "SE*8*0002");
        let err = parse_interchange(&bad).unwrap_err();
        assert_eq!(err.label(), "edi_transaction");
    }

    #[test]
    fn not_an_interchange_is_syntax_error() {
        assert_eq!(parse_interchange("hello").unwrap_err().label(), "edi_syntax");
        assert_eq!(parse_interchange("ISA*00*").unwrap_err().label(), "edi_syntax");
    }
}
