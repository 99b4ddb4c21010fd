//! Payloads compressed with zstd before they reach the server: a batch's rows
//! travel through the history several times (RESULTS), and the server's work
//! grows with their bytes. Any payload whose encoding says `binary/zstd` is
//! decoded whether or not this process compresses, so members and workers may
//! change `temporal.compress_payloads` one at a time. The Temporal UI and CLI
//! show what `apex-ingest codec` ([`super::codec_server`]) decodes for them.

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use prost::Message;
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

const ENCODING: &str = "encoding";
const ZSTD: &[u8] = b"binary/zstd";
/// Smaller payloads (ids, statuses) are left as they are.
const MIN_BYTES: usize = 1024;
/// zstd's fast levels: the point is fewer bytes for the server, cheaply.
const LEVEL: i32 = 1;

pub struct ZstdCodec {
    compress: bool,
}

/// The data converter of every client: the default JSON payloads, and this codec.
pub fn data_converter(compress: bool) -> DataConverter {
    DataConverter::new(
        PayloadConverter::default(),
        DefaultFailureConverter::default(),
        ZstdCodec { compress },
    )
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> PayloadConversionError {
    PayloadConversionError::EncodingError(Box::new(e))
}

/// A payload as it goes to the server: compressed when asked and large enough.
pub(super) fn encode_one(payload: Payload, compress: bool) -> Result<Payload, PayloadConversionError> {
    if !compress || payload.data.len() < MIN_BYTES {
        return Ok(payload);
    }
    let data = zstd::bulk::compress(&payload.encode_to_vec(), LEVEL).map_err(failed)?;
    Ok(Payload {
        metadata: HashMap::from([(ENCODING.to_owned(), ZSTD.to_vec())]),
        data,
        ..Default::default()
    })
}

pub(super) fn decompress(payload: Payload) -> Result<Payload, PayloadConversionError> {
    if payload.metadata.get(ENCODING).map(Vec::as_slice) != Some(ZSTD) {
        return Ok(payload);
    }
    let bytes = zstd::stream::decode_all(payload.data.as_slice()).map_err(failed)?;
    Payload::decode(bytes.as_slice()).map_err(failed)
}

impl PayloadCodec for ZstdCodec {
    fn encode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let encoded = payloads.into_iter().map(|p| encode_one(p, self.compress)).collect();
        async move { encoded }.boxed()
    }

    fn decode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let decoded = payloads.into_iter().map(decompress).collect();
        async move { decoded }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(bytes: usize) -> Payload {
        Payload {
            metadata: HashMap::from([(ENCODING.to_owned(), b"json/plain".to_vec())]),
            data: "{\"summary\":\"samsara VehicleLocation\"}".repeat(bytes / 36 + 1).into_bytes(),
            ..Default::default()
        }
    }

    #[test]
    fn large_payloads_shrink_and_come_back_whole_small_ones_pass() {
        let (large, small) = (payload(100_000), payload(100));
        let encoded: Vec<Payload> = [large.clone(), small.clone()]
            .into_iter()
            .map(|p| encode_one(p, true))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(encoded[0].metadata[ENCODING], ZSTD);
        assert!(encoded[0].data.len() < large.data.len() / 10, "{} bytes", encoded[0].data.len());
        assert_eq!(encoded[1], small);
        let decoded: Vec<Payload> = encoded.into_iter().map(decompress).collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded, vec![large.clone(), small]);
        // Not compressing: nothing changes, and a compressed payload still decodes.
        assert_eq!(encode_one(large.clone(), false).unwrap(), large);
    }
}
