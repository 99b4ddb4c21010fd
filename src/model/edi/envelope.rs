//! The X12 envelope: separators from the ISA segment, segments and their
//! elements, and the ISA/GS/ST nesting with its control numbers and counts.

use chrono::{DateTime, Utc};

use super::segment::{Segment, parse_date_time};
use super::transactions::{parse_204, parse_210, parse_214, parse_990};
use super::{EdiContent, EdiTransaction};
use crate::model::poison::PoisonReason;

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
