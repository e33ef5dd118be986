//! Notifications through a notification-channel plugin, under the notification failure
//! policy: a channel that fails (trap, budget, memory, invalid output), or says the
//! failure is temporary, gets the notification again later with the same idempotency
//! key; only a permanent refusal is final. Failures of the plugin itself count towards
//! disabling it automatically.

use olivine_plugin_runtime::bindings::types;

use super::decisions::{Decision, hash};
use super::{Plugins, observe_call};

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
    let mut decision = Decision {
        plugin_id: channel.id.clone(),
        version: channel.version.clone(),
        call: "deliver",
        input_hash,
        output_hash: String::new(),
        outcome: String::new(),
        fuel: 0,
        duration_us: 0,
    };
    let outcome = match result {
        Ok((answer, stats)) => {
            observe_call(&channel, "deliver", "ok", Some(stats));
            plugins.record_outcome(&channel, Ok(())).await;
            decision.fuel = stats.fuel_used;
            decision.duration_us = stats.duration.as_micros() as u64;
            match answer {
                Ok(receipt) => DeliveryOutcome::Delivered {
                    provider_reference: receipt.provider_reference,
                },
                Err(types::DeliveryError::Retryable(reason)) => DeliveryOutcome::Retry { reason },
                Err(types::DeliveryError::Permanent(reason)) => DeliveryOutcome::Failed { reason },
            }
        }
        Err(err) => {
            observe_call(&channel, "deliver", err.kind(), None);
            tracing::warn!(plugin = channel.id, version = channel.version, error = %err, "notification channel failed; will retry");
            plugins.record_outcome(&channel, Err(&err)).await;
            DeliveryOutcome::Retry {
                reason: format!("the channel {err}"),
            }
        }
    };
    decision.outcome = match &outcome {
        DeliveryOutcome::Delivered { .. } => "ok",
        DeliveryOutcome::Retry { .. } => "retry",
        DeliveryOutcome::Failed { .. } => "failed",
    }
    .to_owned();
    decision.output_hash = hash(format!("{outcome:?}").as_bytes());
    plugins.decisions.record(decision);
    outcome
}
