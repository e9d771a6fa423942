//! Sealing and opening secure values through vault: this service never holds a key; each value
//! is sealed for its place (credential id, field id, the credential version it was written in).

use ttscm_contract::WireError;
use ttscm_contract::vault::{GenerateTotp, Place, Plaintexts, Seal, SealItem, TotpCode, Unseal};
use ttscm_runtime::ids;
use ttscm_runtime::service::CallContext;

use crate::domain::CheckedValue;
use crate::service::Service;
use crate::store::StoredValue;

impl Service {
    /// The stored form of `values` as written in credential version `version`, `existing` being
    /// the values stored now. A value equal to the stored one of its field (and sealed the same
    /// way) is kept as it is — same blob, same version — so only what changed is written anew:
    /// vault compares secure values in the one seal call. Values keep their id across writes.
    pub(crate) async fn seal(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: Vec<CheckedValue>,
        existing: &[StoredValue],
        version: u64,
    ) -> Result<Vec<StoredValue>, WireError> {
        let stored = |field_id: &str| existing.iter().find(|e| e.field_id == field_id);
        let to_seal: Vec<SealItem> = values
            .iter()
            .filter(|v| v.secure)
            .map(|v| SealItem {
                place: Place {
                    credential_id: credential_id.to_owned(),
                    field_id: v.field_id.clone(),
                    version: Some(version),
                },
                plaintext: v.text.clone(),
                keep_if_equal: stored(&v.field_id)
                    .filter(|e| e.sealed)
                    .map(|e| e.sealed_item(credential_id)),
            })
            .collect();
        let mut sealed = if to_seal.is_empty() {
            Vec::new()
        } else {
            self.client.call(ctx, &Seal { items: to_seal }).await?
        }
        .into_iter();
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            let current = stored(&value.field_id);
            let (sealed_flag, text) = if value.secure {
                (true, sealed.next().ok_or_else(WireError::internal)?)
            } else {
                (false, value.text)
            };
            match current {
                Some(current) if current.sealed == sealed_flag && current.value == text => {
                    out.push(current.clone());
                }
                _ => out.push(StoredValue {
                    id: current.map_or_else(ids::new_id, |e| e.id.clone()),
                    field_id: value.field_id,
                    sealed: sealed_flag,
                    value: text,
                    version,
                }),
            }
        }
        Ok(out)
    }

    /// Opens `values` of credential `credential_id` through vault; the plaintexts are wiped
    /// when the answer is dropped.
    pub(crate) async fn unseal(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: &[&StoredValue],
    ) -> Result<Plaintexts, WireError> {
        if values.is_empty() {
            return Ok(Plaintexts(Vec::new()));
        }
        let items = values.iter().map(|v| v.sealed_item(credential_id)).collect();
        self.client.call(ctx, &Unseal { items }).await
    }

    /// `values` of credential `credential_id` as inputs to validate again (secure ones opened
    /// through vault, each keeping its id): what a migration and a restore check against a type.
    pub(crate) async fn as_inputs(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: &[&StoredValue],
    ) -> Result<Vec<ttscm_contract::credential::FieldValueInput>, WireError> {
        let sealed: Vec<&StoredValue> = values.iter().copied().filter(|v| v.sealed).collect();
        let mut opened = std::mem::take(&mut self.unseal(ctx, credential_id, &sealed).await?.0).into_iter();
        let mut inputs = Vec::with_capacity(values.len());
        for value in values {
            let text = if value.sealed {
                opened.next().ok_or_else(WireError::internal)?
            } else {
                value.value.clone()
            };
            inputs.push(ttscm_contract::credential::FieldValueInput {
                id: Some(value.id.clone()),
                field_id: value.field_id.clone(),
                value: serde_json::Value::String(text),
            });
        }
        Ok(inputs)
    }

    /// The current code of the sealed TOTP seed `value`, computed in vault (the seed is not
    /// opened here).
    pub(crate) async fn totp_code(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        value: &StoredValue,
    ) -> Result<TotpCode, WireError> {
        let item = value.sealed_item(credential_id);
        self.client.call(ctx, &GenerateTotp { item }).await
    }
}
