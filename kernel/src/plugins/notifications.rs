//! Notifications through a notification-channel plugin, under the notification failure
//! policy: a channel that fails (trap, budget, memory, invalid output), or says the
//! failure is temporary, gets the notification again later with the same idempotency
//! key; only a permanent refusal is final. Failures of the plugin itself count towards
//! disabling it automatically.

use std::time::Duration;

use olivine_plugin_runtime::bindings::notification_types as nt;

use super::decisions::hash;
use super::{Judged, Plugins};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        provider_reference: String,
    },
    /// Deliver again later (same idempotency key), after `after` when the provider
    /// said so (`Retry-After`).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will never succeed as it is (bad recipient, host not granted, ...).
    Failed {
        reason: String,
    },
    /// The recipient no longer exists (a device token the push service dropped).
    Gone {
        reason: String,
    },
}

/// Delivers `notification` through the active channel `channel_id`.
pub async fn deliver(plugins: &Plugins, channel_id: &str, message: nt::Message) -> DeliveryOutcome {
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
            after: None,
        };
    };
    let input_hash = hash(format!("{}\0{}", message.topic, message.idempotency_key).as_bytes());
    let result = {
        let channel = channel.clone();
        tokio::task::spawn_blocking(move || channel.plugin.deliver(&message, &channel.settings))
            .await
    };
    let result = match result {
        Ok(result) => result,
        Err(err) => {
            return DeliveryOutcome::Retry {
                reason: format!("delivery task failed: {err}"),
                after: None,
            };
        }
    };
    match result {
        Ok((answer, stats)) => {
            let outcome = match answer {
                Ok(receipt) => DeliveryOutcome::Delivered {
                    provider_reference: receipt.provider_reference,
                },
                Err(nt::DeliveryError::Retryable(retry)) => DeliveryOutcome::Retry {
                    reason: retry.reason,
                    // A provider asking for more than an hour is told an hour: the job's
                    // own backoff still spaces the attempts.
                    after: retry
                        .after_seconds
                        .map(|s| Duration::from_secs(u64::from(s).min(3600))),
                },
                Err(nt::DeliveryError::Permanent(reason)) => DeliveryOutcome::Failed { reason },
                Err(nt::DeliveryError::RecipientGone(reason)) => DeliveryOutcome::Gone { reason },
            };
            let judged = Judged {
                outcome: match &outcome {
                    DeliveryOutcome::Delivered { .. } => "ok",
                    DeliveryOutcome::Retry { .. } => "retry",
                    DeliveryOutcome::Failed { .. } => "failed",
                    DeliveryOutcome::Gone { .. } => "gone",
                },
                output_hash: hash(format!("{outcome:?}").as_bytes()),
                // The message's content and recipient are personal data: none.
                detail: None,
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
                after: None,
            }
        }
    }
}
