//! A test kernel served on a real TCP port, as `olivine serve` serves it, with card
//! payments: the sandbox processor (examples/sandbox-processor) behind the bundled payment
//! adapter (plugins/sandbox-payments). The browser and Lighthouse tests drive it.

use std::net::SocketAddr;

use axum::http::StatusCode;
use serde_json::json;

use super::{TestApp, plugin_upload};

/// The shop on its port, and the processor its payment plugin calls.
pub struct ServedShop {
    pub app: TestApp,
    /// `http://127.0.0.1:<port>`, where a browser finds the shop.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _processor: sandbox_processor::Handle,
}

/// Starts the sandbox processor with `config`, installs the payment plugin into `app`
/// pointed at it, and serves `app` on a free port.
pub async fn serve_with_card_payments(
    app: TestApp,
    config: sandbox_processor::Config,
) -> ServedShop {
    let (processor, handle) = sandbox_processor::spawn_with("127.0.0.1:0", config)
        .await
        .expect("sandbox processor");
    let r = app
        .admin_post(
            "/api/v1/admin/plugins",
            &plugin_upload("sandbox-payments", "sandbox_payments", |m| m),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let host = processor.to_string();
    let r = app
        .admin_patch(
            "/api/v1/admin/plugins/sandbox-payments",
            &json!({
                "enabled": true,
                "settings": {
                    "base_url": format!("http://{host}"),
                    "checkout_tokenize_url": format!("http://{host}/v1/tokens"),
                },
                "granted_hosts": [host],
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.settle().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the shop");
    let addr = listener.local_addr().expect("its address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = app
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("the shop serves");
    });
    ServedShop {
        app,
        base: format!("http://{addr}"),
        stop: Some(stop),
        server: Some(server),
        _processor: handle,
    }
}

impl ServedShop {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops serving (graceful: the browser's kept-alive connections close), then the
    /// kernel.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.app.stop().await;
    }
}
