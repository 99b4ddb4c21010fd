//! Compact serde forms for bytes that cross Temporal as JSON payloads. Plain
//! serde writes `Vec<u8>` and `Vec<f32>` as number arrays, 3–5 times larger; a
//! 500-event batch would then pass Temporal's 2 MB payload limit.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serializer};

/// `Vec<u8>` as one base64 string.
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// `Vec<f32>` as base64 of its little-endian bytes.
pub mod floats {
    use super::*;

    pub fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        s.serialize_str(&STANDARD.encode(raw))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let raw = STANDARD.decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?;
        if raw.len() % 4 != 0 {
            return Err(serde::de::Error::custom(format!(
                "{} bytes is not a whole number of f32 values",
                raw.len()
            )));
        }
        Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

/// Message headers as (name, base64 value) pairs.
pub mod headers {
    use super::*;
    use serde::Serialize;

    pub fn serialize<S: Serializer>(headers: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let encoded: Vec<(&str, String)> =
            headers.iter().map(|(k, v)| (k.as_str(), STANDARD.encode(v))).collect();
        encoded.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        Vec::<(String, String)>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, STANDARD.decode(v).map_err(serde::de::Error::custom)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "super::bytes")]
        raw: Vec<u8>,
        #[serde(with = "super::floats")]
        vector: Vec<f32>,
        #[serde(with = "super::headers")]
        headers: Vec<(String, Vec<u8>)>,
    }

    #[test]
    fn round_trips_and_is_compact() {
        let sample = Sample {
            raw: (0..=255).collect(),
            vector: (0..384).map(|i| (i as f32).sin()).collect(),
            headers: vec![("k".into(), vec![0, 1, 2])],
        };
        let json = serde_json::to_string(&sample).unwrap();
        assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), sample);
        // 384 floats as base64 of 1536 bytes: 2048 characters, not ~4 KB of decimals.
        assert!(json.len() < 2048 + 344 + 100, "{} bytes", json.len());
    }

    #[test]
    fn rejects_a_vector_of_partial_floats() {
        let err = serde_json::from_str::<Sample>(r#"{"raw":"","vector":"AAA=","headers":[]}"#).unwrap_err();
        assert!(err.to_string().contains("whole number of f32"), "{err}");
    }
}
