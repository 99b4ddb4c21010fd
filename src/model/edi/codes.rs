//! What the X12 codes a summary carries mean, in words: a summary is what the
//! vectors and the text route read, and "D1" alone says nothing to either.
//! Codes outside these tables are kept as they are.

/// AT701 shipment status codes (214).
pub fn status(code: &str) -> Option<&'static str> {
    Some(match code {
        "X3" => "arrived at pick-up location",
        "AF" => "departed pick-up location with shipment",
        "X6" => "en route to delivery location",
        "X1" => "arrived at delivery location",
        "D1" => "delivered, unloading completed",
        "SD" => "shipment delayed",
        "AG" => "estimated delivery",
        "CD" => "carrier departed delivery location",
        _ => return None,
    })
}

/// AT702 status reason codes (214); `NS`, normal status, says nothing.
pub fn reason(code: &str) -> Option<&'static str> {
    Some(match code {
        "AF" => "accident",
        "AG" => "consignee related",
        "AH" => "driver related",
        "AI" => "mechanical breakdown",
        "AJ" => "other carrier related",
        "AM" => "shipper related",
        "AO" => "weather or natural disaster related",
        _ => return None,
    })
}

/// B104 reservation action codes (990).
pub fn tender_action(code: &str) -> Option<&'static str> {
    Some(match code {
        "A" => "accepted",
        "D" => "declined",
        _ => return None,
    })
}

/// `code`, then its meaning where the table knows it.
pub fn spelled(code: &str, meaning: fn(&str) -> Option<&'static str>) -> String {
    match meaning(code) {
        Some(words) => format!("{code} {words}"),
        None => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_are_spelled_and_unknown_ones_kept() {
        assert_eq!(spelled("D1", status), "D1 delivered, unloading completed");
        assert_eq!(spelled("ZZ", status), "ZZ");
        assert_eq!(spelled("A", tender_action), "A accepted");
        assert_eq!(reason("NS"), None);
    }
}
