//! Notifications through a notification-channel plugin, under the notification failure
//! policy: a channel that fails (trap, budget, memory, invalid output), or says the
//! failure is temporary, gets the notification again later with the same idempotency
//! key; only a permanent refusal is final. Failures of the plugin itself count towards
//! disabling it automatically.

use olivine_plugin_runtime::bindings::types;

use super::decisions::hash;
use super::{Judged, Plugins};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        provider_reference: String,
    },
    /// Deliver again later (same idempotency key).
    Retry {
        reason: String,
    },
    /// Will never succeed as it is (bad recipient, host not granted, ...).
    Failed {
        reason: String,
    },
}

/// Delivers `notification` through the active channel `channel_id`.
pub async fn deliver(
    plugins: &Plugins,
    channel_id: &str,
    notification: types::Notification,
) -> DeliveryOutcome {
    let snapshot = plugins.snapshot();
    let Some(channel) = snapshot
        .notifications
        .iter()
        .find(|p| p.id == channel_id)
        .cloned()
    else {
        // Disabled or not installed: the merchant may turn it on again.
        return DeliveryOutcome::Retry {
            reason: format!("notification channel `{channel_id}` is not active"),
        };
    };
    let input_hash = hash(
        format!(
            "{}\0{}\0{}",
            notification.topic, notification.idempotency_key, notification.recipient
        )
        .as_bytes(),
    );
    let result = {
        let channel = channel.clone();
        tokio::task::spawn_blocking(move || {
            channel.plugin.deliver(&notification, &channel.settings)
        })
        .await
    };
    let result = match result {
        Ok(result) => result,
        Err(err) => {
            return DeliveryOutcome::Retry {
                reason: format!("delivery task failed: {err}"),
            };
        }
    };
    match result {
        Ok((answer, stats)) => {
            let outcome = match answer {
                Ok(receipt) => DeliveryOutcome::Delivered {
                    provider_reference: receipt.provider_reference,
                },
                Err(types::DeliveryError::Retryable(reason)) => DeliveryOutcome::Retry { reason },
                Err(types::DeliveryError::Permanent(reason)) => DeliveryOutcome::Failed { reason },
            };
            let judged = Judged {
                outcome: match &outcome {
                    DeliveryOutcome::Delivered { .. } => "ok",
                    DeliveryOutcome::Retry { .. } => "retry",
                    DeliveryOutcome::Failed { .. } => "failed",
                },
                output_hash: hash(format!("{outcome:?}").as_bytes()),
            };
            plugins
                .book_call(&channel, "deliver", input_hash, Ok((stats, judged)))
                .await;
            outcome
        }
        Err(err) => {
            tracing::warn!(plugin = channel.id, version = channel.version, error = %err, "notification channel failed; will retry");
            plugins
                .book_call(&channel, "deliver", input_hash, Err(&err))
                .await;
            DeliveryOutcome::Retry {
                reason: format!("the channel {err}"),
            }
        }
    }
}
