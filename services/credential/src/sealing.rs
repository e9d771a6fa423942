//! Sealing and opening secure values through vault: this service never holds a key; each value
//! is sealed for its place (credential id, field id).

use ttscm_contract::WireError;
use ttscm_contract::vault::{GenerateTotp, Place, Plaintexts, Seal, SealItem, SealedItem, TotpCode, Unseal};
use ttscm_runtime::ids;
use ttscm_runtime::service::CallContext;

use crate::domain::CheckedValue;
use crate::service::Service;
use crate::store::StoredValue;

impl Service {
    pub(crate) async fn seal(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: Vec<CheckedValue>,
        existing: &[StoredValue],
    ) -> Result<Vec<StoredValue>, WireError> {
        let to_seal: Vec<SealItem> = values
            .iter()
            .filter(|v| v.secure)
            .map(|v| SealItem {
                place: Place {
                    credential_id: credential_id.to_owned(),
                    field_id: v.field_id.clone(),
                },
                plaintext: v.text.clone(),
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
            // Values keep their id across updates of the same field; new fields get a new id.
            let id = existing
                .iter()
                .find(|e| e.field_id == value.field_id)
                .map_or_else(ids::new_id, |e| e.id.clone());
            let (sealed_flag, text) = if value.secure {
                (true, sealed.next().ok_or_else(WireError::internal)?)
            } else {
                (false, value.text)
            };
            out.push(StoredValue {
                id,
                field_id: value.field_id,
                sealed: sealed_flag,
                value: text,
            });
        }
        Ok(out)
    }

    /// Opens `values` through vault; the plaintexts are wiped when the answer is dropped.
    pub(crate) async fn unseal(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        values: &[&StoredValue],
    ) -> Result<Plaintexts, WireError> {
        if values.is_empty() {
            return Ok(Plaintexts(Vec::new()));
        }
        let items = values
            .iter()
            .map(|v| SealedItem {
                place: Place {
                    credential_id: credential_id.to_owned(),
                    field_id: v.field_id.clone(),
                },
                sealed: v.value.clone(),
            })
            .collect();
        self.client.call(ctx, &Unseal { items }).await
    }

    /// The current code of the sealed TOTP seed `value`, computed in vault (the seed is not
    /// opened here).
    pub(crate) async fn totp_code(
        &self,
        ctx: &CallContext,
        credential_id: &str,
        value: &StoredValue,
    ) -> Result<TotpCode, WireError> {
        let item = SealedItem {
            place: Place {
                credential_id: credential_id.to_owned(),
                field_id: value.field_id.clone(),
            },
            sealed: value.value.clone(),
        };
        self.client.call(ctx, &GenerateTotp { item }).await
    }
}
