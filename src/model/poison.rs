//! Why a raw event could not become records (shared by the typed inputs and parsing).

/// Why a raw event could not become records. The label is a bounded set (metrics),
/// the detail says exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoisonReason {
    #[error("payload is not valid UTF-8: {0}")]
    NotUtf8(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid Samsara event: {0}")]
    InvalidSamsara(String),
    #[error("invalid webhook event: {0}")]
    InvalidWebhook(String),
    #[error("malformed EDI segment: {0}")]
    EdiSyntax(String),
    #[error("EDI envelope error: {0}")]
    EdiEnvelope(String),
    #[error("invalid EDI transaction: {0}")]
    EdiTransaction(String),
    #[error("invalid bank transaction: {0}")]
    InvalidTransaction(String),
    #[error("invalid CRM object: {0}")]
    InvalidCrmObject(String),
    #[error("invalid market index point: {0}")]
    InvalidMarketPoint(String),
    #[error("invalid QuickBooks object: {0}")]
    InvalidFinancialObject(String),
}

impl PoisonReason {
    /// Bounded label for metrics and the dead-letter table.
    pub fn label(&self) -> &'static str {
        match self {
            PoisonReason::NotUtf8(_) => "not_utf8",
            PoisonReason::InvalidJson(_) => "invalid_json",
            PoisonReason::InvalidSamsara(_) => "invalid_samsara",
            PoisonReason::InvalidWebhook(_) => "invalid_webhook",
            PoisonReason::EdiSyntax(_) => "edi_syntax",
            PoisonReason::EdiEnvelope(_) => "edi_envelope",
            PoisonReason::EdiTransaction(_) => "edi_transaction",
            PoisonReason::InvalidTransaction(_) => "invalid_transaction",
            PoisonReason::InvalidCrmObject(_) => "invalid_crm_object",
            PoisonReason::InvalidMarketPoint(_) => "invalid_market_point",
            PoisonReason::InvalidFinancialObject(_) => "invalid_financial_object",
        }
    }
}
