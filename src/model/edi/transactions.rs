//! The transaction sets' own segments: 214 shipment status, 210 invoice,
//! 204 tender and 990 response, each into its `EdiContent`.

use super::segment::{Segment, cents, number, parse_date_time};
use super::{EdiContent, InvoiceLine, Party, StatusDetail};
use crate::model::poison::PoisonReason;

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

pub(super) fn parse_214(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
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

pub(super) fn parse_210(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
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

pub(super) fn parse_204(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
    let mut common = Common::default();
    let mut b2 = None;
    let mut purpose = None;
    let mut stops = 0;
    let (mut pickup_at, mut deliver_by) = (None, None);
    for seg in segs {
        if common.take(seg) {
            continue;
        }
        match seg.id() {
            "B2" => b2 = Some((seg.owned(2), seg.owned(4), seg.owned(6))),
            "B2A" => purpose = seg.owned(1),
            "S5" => stops += 1,
            // G6201: 10/37/38/69 are pick-up dates, 53/54/68/70 delivery ones;
            // the first pick-up and the last delivery are the shipment's.
            "G62" => {
                let at = parse_date_time(seg.el(2), seg.el(4));
                match seg.el(1) {
                    Some("10" | "37" | "38" | "69") => pickup_at = pickup_at.or(at),
                    Some("53" | "54" | "68" | "70") => deliver_by = at.or(deliver_by),
                    _ => {}
                }
            }
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
        pickup_at,
        deliver_by,
    })
}

pub(super) fn parse_990(segs: &[Segment<'_>]) -> Result<EdiContent, PoisonReason> {
    let b1 = segs.iter().find(|s| s.id() == "B1").ok_or_else(|| invalid("990", "B1 segment is missing"))?;
    Ok(EdiContent::TenderResponse {
        scac: b1.owned(1),
        shipment_id: b1.owned(2).ok_or_else(|| invalid("990", "B102 shipment id is missing"))?,
        action: b1.owned(4),
    })
}
