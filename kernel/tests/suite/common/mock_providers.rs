//! Local stand-ins for the providers the first-party notification channels talk to, so
//! their tests drive the real plugins through the kernel's plugin host without reaching
//! the internet. Each mock listens on 127.0.0.1, checks requests the way the provider
//! does (what it checks is written on each mock), answers the way the provider answers,
//! records every request for the test to assert on, and can be told to answer the next
//! requests with an error.
//!
//! - [`TestCa`]: a certificate authority made for the test, and a server certificate it
//!   signed for `127.0.0.1` and `localhost`; its PEM is in a file for the kernel's
//!   `plugin_http_ca_file` (`OLIVINE_PLUGIN_HTTP_CA_FILE`).
//! - [`MockApns`]: Apple Push Notification service, HTTP/2 over TLS only.
//! - [`MockFcm`]: Firebase Cloud Messaging v1 and Google's OAuth2 token endpoint.
//! - [`MockMail`]: a Postmark-style email API.
//! - [`MockWebhook`]: a webhook receiver that verifies Olivine's HMAC signature.
//!
//! Every key here is made for the test (or, for the RSA one, committed as an obvious
//! test key): none is anyone's credential.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The RSA key of the mock FCM service account (PKCS#8). Made for these tests only.
pub const TEST_ONLY_FCM_PRIVATE_KEY_PEM: &str =
    include_str!("test_only_fcm_service_account_key.pem");
/// Its public half (PKCS#1), which the mock token endpoint verifies assertions with.
pub const TEST_ONLY_FCM_PUBLIC_KEY_PEM: &str =
    include_str!("test_only_fcm_service_account_key.pub.pem");

/// The scope a service account asks for to send with FCM.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random version-4 UUID, as providers write message ids.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A fresh P-256 key pair: the private key as PKCS#8 PEM (what an APNs `.p8` file holds)
/// and the public key as an uncompressed SEC1 point.
pub fn p256_key_pair() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    (key.serialize_pem(), key.public_key_raw().to_vec())
}

/// The DER inside a one-block PEM text.
pub fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("PEM base64")
}

/// A header map as lower-case names to values (the last value of a repeated header).
fn header_strings(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serves `router` on a port of its own on 127.0.0.1 (plain HTTP/1.1).
async fn serve_plain(router: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a mock provider");
    let addr = listener.local_addr().expect("mock address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).expect("status");
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The test certificate authority.

/// A certificate authority made for one test, and a server certificate it signed for
/// `127.0.0.1` (IP SAN) and `localhost`.
pub struct TestCa {
    dir: tempfile::TempDir,
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Olivine test CA (tests only)");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");

        let server_key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params
            .signed_by(&server_key, &*ca)
            .expect("server certificate");

        let dir = tempfile::tempdir().expect("temp dir for the test CA");
        let ca_pem = ca.pem();
        std::fs::write(dir.path().join("test-ca.pem"), &ca_pem).expect("write the CA PEM");
        TestCa {
            dir,
            ca_pem,
            server_chain: vec![server.der().clone(), ca.der().clone()],
            server_key_der: server_key.serialize_der(),
        }
    }

    /// The file holding the CA certificate (PEM), for `plugin_http_ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("test-ca.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A TLS client configuration that trusts only this CA and offers `alpn` (for tests
    /// of the mocks themselves).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.server_chain[1].clone())
            .expect("the CA certificate");
        #[allow(deprecated)] // See `server_config`.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS server configuration with the server certificate that offers only `alpn`.
    /// The ring provider is named here rather than installed process-wide.
    fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        // Deprecated only for lacking post-quantum key exchange, which a local test
        // server has no use for; ring keeps the build free of aws-lc's C toolchain.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(self.server_key_der.clone()),
        );
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .expect("server certificate and key");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------
// APNs.

/// An answer a test scripts for the next request (after the request passed every check).
#[derive(Clone, Debug)]
pub struct ApnsError {
    pub status: u16,
    pub reason: String,
}

impl ApnsError {
    pub fn new(status: u16, reason: &str) -> ApnsError {
        ApnsError {
            status,
            reason: reason.to_owned(),
        }
    }

    pub fn service_unavailable() -> ApnsError {
        Self::new(503, "ServiceUnavailable")
    }
}

/// One request the mock APNs received, and what it answered.
#[derive(Clone, Debug)]
pub struct ApnsRequest {
    /// Which TLS connection it came on (1, 2, ... in the order they were accepted).
    pub connection: u64,
    pub method: String,
    pub path: String,
    /// The device token of `/3/device/<token>`.
    pub token: String,
    /// Lower-case names; `:authority` is not a header in HTTP/2 and is in `authority`.
    pub headers: HashMap<String, String>,
    pub authority: Option<String>,
    pub body: Vec<u8>,
    /// The payload, when it is JSON.
    pub json: Option<Value>,
    /// The provider token (the JWT of `authorization: bearer <jwt>`).
    pub jwt: Option<String>,
    /// Its `iat`, when the mock could read it.
    pub jwt_iat: Option<i64>,
    pub status: u16,
    pub reason: Option<String>,
    /// The `apns-id` it answered.
    pub apns_id: String,
    /// When its body had arrived (the push benchmark's latency ends here).
    pub received: Instant,
}

impl ApnsRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct ApnsState {
    requests: Vec<ApnsRequest>,
    /// Dead tokens and when they went away (ms since the epoch).
    unregistered: HashMap<String, i64>,
    bad_tokens: HashSet<String>,
    script: VecDeque<ApnsError>,
    connections: u64,
    refused_connections: Vec<String>,
}

struct ApnsShared {
    team_id: String,
    key_id: String,
    public_key: DecodingKey,
    state: Mutex<ApnsState>,
}

/// What one connection remembers about provider tokens: Apple refuses a connection's
/// token being changed more often than once in 20 minutes.
#[derive(Default)]
struct ApnsConnection {
    last_jwt: Option<String>,
    changes: Vec<Instant>,
}

/// A mock of APNs' provider API (`api.push.apple.com`), over HTTP/2 with TLS only: a
/// connection that does not negotiate `h2` by ALPN is closed (recorded in
/// [`MockApns::refused_connections`]).
///
/// `POST /3/device/<token>` is checked like Apple does, in this order:
/// - the path (404 `BadPath`), the method (405 `MethodNotAllowed`), no repeated
///   `apns-*` or `authorization` header (400 `DuplicateHeaders`);
/// - `authorization: bearer <jwt>` (403 `MissingProviderToken`); the JWT is ES256 with
///   `kid` = the key id, `iss` = the team id, a valid signature by the team's P-256 key
///   (403 `InvalidProviderToken`) and an `iat` within the last hour (403
///   `ExpiredProviderToken`; one more than a minute ahead is invalid);
/// - a connection whose provider token changes a second time within 20 minutes: 429
///   `TooManyProviderTokenUpdates` (a plugin that signs a new token per push fails);
/// - `apns-topic` (400 `MissingTopic`), `apns-push-type` one of Apple's (400
///   `InvalidPushType`), `apns-priority` 1, 5 or 10 (400 `BadPriority`),
///   `apns-expiration` a number (400 `BadExpirationDate`), `apns-collapse-id` at most
///   64 bytes (400 `BadCollapseId`);
/// - the payload: not empty (400 `PayloadEmpty`), at most 4096 bytes (413
///   `PayloadTooLarge`), a JSON object with `aps.alert` (400 `BadPayload`, the mock's);
/// - the token: hexadecimal, at least 64 digits, not marked bad (400 `BadDeviceToken`);
///   marked dead: 410 `Unregistered` with `timestamp`;
/// - then a scripted answer if there is one, else 200 with an `apns-id` header (the
///   request's own `apns-id` when it sent one).
pub struct MockApns {
    addr: SocketAddr,
    shared: Arc<ApnsShared>,
    private_key_pem: String,
    task: JoinHandle<()>,
}

impl MockApns {
    /// A mock for team `team_id` whose signing key `key_id` is made now.
    pub async fn start(ca: &TestCa, team_id: &str, key_id: &str) -> MockApns {
        let (private_key_pem, public_key) = p256_key_pair();
        let shared = Arc::new(ApnsShared {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            public_key: DecodingKey::from_ec_der(&public_key),
            state: Mutex::default(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&[b"h2"]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock APNs");
        let addr = listener.local_addr().expect("mock APNs address");
        let task = tokio::spawn(apns_accept(listener, acceptor, shared.clone()));
        MockApns {
            addr,
            shared,
            private_key_pem,
            task,
        }
    }

    /// `127.0.0.1:<port>`, the host to grant.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn team_id(&self) -> &str {
        &self.shared.team_id
    }

    pub fn key_id(&self) -> &str {
        &self.shared.key_id
    }

    /// The team's signing key (PKCS#8 PEM), as the merchant would paste it from the
    /// `.p8` file.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// From now on `token` answers 410 `Unregistered`.
    pub fn mark_unregistered(&self, token: &str) {
        lock(&self.shared.state)
            .unregistered
            .insert(token.to_owned(), now_secs() * 1000);
    }

    /// From now on `token` answers 400 `BadDeviceToken`.
    pub fn mark_bad_token(&self, token: &str) {
        lock(&self.shared.state).bad_tokens.insert(token.to_owned());
    }

    /// The next request that passes every check gets `answer` (queued after earlier
    /// scripted answers).
    pub fn script(&self, answer: ApnsError) {
        lock(&self.shared.state).script.push_back(answer);
    }

    pub fn requests(&self) -> Vec<ApnsRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// TLS connections accepted so far (refused ones are not counted).
    pub fn connections(&self) -> u64 {
        lock(&self.shared.state).connections
    }

    /// Connections closed without serving: failed handshakes (an untrusted certificate,
    /// no common ALPN protocol) and clients that did not negotiate `h2`.
    pub fn refused_connections(&self) -> Vec<String> {
        lock(&self.shared.state).refused_connections.clone()
    }
}

impl Drop for MockApns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn apns_accept(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<ApnsShared>,
) {
    // Dropped with this task (when the mock is dropped): every connection closes too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(err) => {
                    lock(&shared.state)
                        .refused_connections
                        .push(format!("TLS handshake failed: {err}"));
                    return;
                }
            };
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() != Some(b"h2".as_slice()) {
                lock(&shared.state).refused_connections.push(format!(
                    "did not negotiate h2 (ALPN {:?}): APNs speaks HTTP/2 only",
                    alpn.map(|p| String::from_utf8_lossy(&p).into_owned())
                ));
                return;
            }
            let id = {
                let mut state = lock(&shared.state);
                state.connections += 1;
                state.connections
            };
            let connection = Arc::new(Mutex::new(ApnsConnection::default()));
            let service = hyper::service::service_fn(move |request| {
                apns_handle(shared.clone(), id, connection.clone(), request)
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

struct ApnsAnswer {
    status: u16,
    reason: Option<String>,
    timestamp: Option<i64>,
}

impl ApnsAnswer {
    fn error(status: u16, reason: &str) -> ApnsAnswer {
        ApnsAnswer {
            status,
            reason: Some(reason.to_owned()),
            timestamp: None,
        }
    }
}

async fn apns_handle(
    shared: Arc<ApnsShared>,
    connection_id: u64,
    connection: Arc<Mutex<ApnsConnection>>,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let token = path.strip_prefix("/3/device/").unwrap_or("").to_owned();
    let jwt = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("bearer ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .map(|v| v.trim().to_owned());
    let apns_id = parts
        .headers
        .get("apns-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid_v4().to_ascii_uppercase());
    let mut record = ApnsRequest {
        connection: connection_id,
        method: parts.method.to_string(),
        path: path.clone(),
        token: token.clone(),
        headers: header_strings(&parts.headers),
        authority: parts.uri.authority().map(|a| a.to_string()),
        json: serde_json::from_slice(&body).ok(),
        body,
        jwt: jwt.clone(),
        jwt_iat: None,
        status: 0,
        reason: None,
        apns_id: apns_id.clone(),
        received: Instant::now(),
    };
    let answer = apns_judge(&shared, &connection, &parts, jwt.as_deref(), &mut record);
    record.status = answer.status;
    record.reason = answer.reason.clone();
    lock(&shared.state).requests.push(record);

    let mut response = hyper::Response::builder()
        .status(answer.status)
        .header("apns-id", apns_id);
    let body = match answer.reason {
        None => Bytes::new(),
        Some(reason) => {
            response = response.header("content-type", "application/json");
            let mut body = json!({ "reason": reason });
            if let Some(timestamp) = answer.timestamp {
                body["timestamp"] = json!(timestamp);
            }
            Bytes::from(body.to_string())
        }
    };
    Ok(response.body(Full::new(body)).expect("APNs response"))
}

#[derive(Deserialize)]
struct ApnsClaims {
    iss: String,
    iat: i64,
}

fn apns_judge(
    shared: &ApnsShared,
    connection: &Mutex<ApnsConnection>,
    parts: &hyper::http::request::Parts,
    jwt: Option<&str>,
    record: &mut ApnsRequest,
) -> ApnsAnswer {
    let Some(token) = parts.uri.path().strip_prefix("/3/device/") else {
        return ApnsAnswer::error(404, "BadPath");
    };
    if token.is_empty() {
        return ApnsAnswer::error(400, "MissingDeviceToken");
    }
    if parts.method != Method::POST {
        return ApnsAnswer::error(405, "MethodNotAllowed");
    }
    for name in parts.headers.keys() {
        let name = name.as_str();
        if (name.starts_with("apns-") || name == "authorization")
            && parts.headers.get_all(name).iter().count() > 1
        {
            return ApnsAnswer::error(400, "DuplicateHeaders");
        }
    }

    // The provider token.
    let Some(jwt) = jwt else {
        return ApnsAnswer::error(403, "MissingProviderToken");
    };
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return ApnsAnswer::error(403, "InvalidProviderToken");
    };
    if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(shared.key_id.as_str()) {
        return ApnsAnswer::error(403, "InvalidProviderToken");
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims(&["iss"]);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[&shared.team_id]);
    let claims = match jsonwebtoken::decode::<ApnsClaims>(jwt, &shared.public_key, &validation) {
        Ok(data) => data.claims,
        Err(_) => return ApnsAnswer::error(403, "InvalidProviderToken"),
    };
    debug_assert_eq!(claims.iss, shared.team_id);
    record.jwt_iat = Some(claims.iat);
    let now = now_secs();
    if claims.iat > now + 60 {
        return ApnsAnswer::error(403, "InvalidProviderToken");
    }
    if now - claims.iat > 3600 {
        return ApnsAnswer::error(403, "ExpiredProviderToken");
    }
    {
        let mut connection = lock(connection);
        if connection.last_jwt.as_deref() != Some(jwt) {
            if connection.last_jwt.is_some() {
                let window = Duration::from_secs(20 * 60);
                if connection.changes.iter().any(|at| at.elapsed() < window) {
                    return ApnsAnswer::error(429, "TooManyProviderTokenUpdates");
                }
                connection.changes.push(Instant::now());
            }
            connection.last_jwt = Some(jwt.to_owned());
        }
    }

    // The headers.
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if header("apns-topic").is_none_or(str::is_empty) {
        return ApnsAnswer::error(400, "MissingTopic");
    }
    const PUSH_TYPES: &[&str] = &[
        "alert",
        "background",
        "location",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "pushtotalk",
    ];
    if !header("apns-push-type").is_some_and(|t| PUSH_TYPES.contains(&t)) {
        return ApnsAnswer::error(400, "InvalidPushType");
    }
    if !header("apns-priority").is_some_and(|p| ["1", "5", "10"].contains(&p)) {
        return ApnsAnswer::error(400, "BadPriority");
    }
    if header("apns-expiration").is_none_or(|e| e.parse::<u64>().is_err()) {
        return ApnsAnswer::error(400, "BadExpirationDate");
    }
    if header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return ApnsAnswer::error(400, "BadCollapseId");
    }

    // The payload.
    if record.body.is_empty() {
        return ApnsAnswer::error(400, "PayloadEmpty");
    }
    if record.body.len() > 4096 {
        return ApnsAnswer::error(413, "PayloadTooLarge");
    }
    let alert = record
        .json
        .as_ref()
        .and_then(|payload| payload.get("aps"))
        .and_then(|aps| aps.get("alert"));
    if !alert.is_some_and(|a| a.is_object() || a.is_string()) {
        return ApnsAnswer::error(400, "BadPayload");
    }

    // The device.
    let mut state = lock(&shared.state);
    if token.len() < 64
        || !token.bytes().all(|b| b.is_ascii_hexdigit())
        || state.bad_tokens.contains(token)
    {
        return ApnsAnswer::error(400, "BadDeviceToken");
    }
    if let Some(&gone_at) = state.unregistered.get(token) {
        return ApnsAnswer {
            status: 410,
            reason: Some("Unregistered".to_owned()),
            timestamp: Some(gone_at),
        };
    }
    if let Some(scripted) = state.script.pop_front() {
        return ApnsAnswer::error(scripted.status, &scripted.reason);
    }
    ApnsAnswer {
        status: 200,
        reason: None,
        timestamp: None,
    }
}

// ---------------------------------------------------------------------------------------
// FCM.

/// An FCM v1 error, as a test scripts it or the mock answers it.
#[derive(Clone, Debug)]
pub struct FcmError {
    pub http_status: u16,
    /// The canonical `google.rpc` status (`error.status`).
    pub status: String,
    /// FCM's own code (`details[].errorCode` of the `FcmError` detail).
    pub error_code: String,
    pub message: String,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u32>,
}

impl FcmError {
    pub fn new(http_status: u16, status: &str, error_code: &str, message: &str) -> FcmError {
        FcmError {
            http_status,
            status: status.to_owned(),
            error_code: error_code.to_owned(),
            message: message.to_owned(),
            retry_after: None,
        }
    }

    /// 429 `QUOTA_EXCEEDED` with `Retry-After: <seconds>`.
    pub fn quota_exceeded(retry_after: u32) -> FcmError {
        FcmError {
            retry_after: Some(retry_after),
            ..Self::new(
                429,
                "RESOURCE_EXHAUSTED",
                "QUOTA_EXCEEDED",
                "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
            )
        }
    }

    pub fn unavailable() -> FcmError {
        Self::new(
            503,
            "UNAVAILABLE",
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )
    }

    pub fn invalid_argument(message: &str) -> FcmError {
        Self::new(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", message)
    }

    pub fn unregistered() -> FcmError {
        Self::new(
            404,
            "NOT_FOUND",
            "UNREGISTERED",
            "Requested entity was not found.",
        )
    }

    fn response(&self) -> Response {
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": self.error_code,
        })];
        if self.status == "INVALID_ARGUMENT" {
            // Google adds the field at fault; a channel must find FCM's own detail.
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message", "description": self.message}],
            }));
        }
        let mut response = json_response(
            self.http_status,
            json!({"error": {
                "code": self.http_status,
                "message": self.message,
                "status": self.status,
                "details": details,
            }}),
        );
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                after.to_string().parse().expect("header"),
            );
        }
        response
    }
}

/// One request to the mock token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub form: HashMap<String, String>,
    /// The assertion's claims, when its signature verified.
    pub claims: Option<Value>,
    pub status: u16,
    /// `error_description` of a refusal.
    pub error: Option<String>,
}

/// One request to the mock FCM send API.
#[derive(Clone, Debug)]
pub struct FcmRequest {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Option<Value>,
    /// `message.token`.
    pub token: Option<String>,
    pub status: u16,
    /// The `errorCode` it answered, or the message name on success.
    pub answer: String,
}

impl FcmRequest {
    pub fn message(&self) -> &Value {
        self.body
            .as_ref()
            .and_then(|b| b.get("message"))
            .unwrap_or(&Value::Null)
    }
}

#[derive(Default)]
struct FcmState {
    token_requests: Vec<TokenRequest>,
    issued: HashSet<String>,
    requests: Vec<FcmRequest>,
    unregistered: HashSet<String>,
    invalid: HashSet<String>,
    script: VecDeque<FcmError>,
    sent: u64,
}

struct FcmShared {
    project_id: String,
    client_email: String,
    token_url: String,
    public_key: DecodingKey,
    state: Mutex<FcmState>,
}

/// A mock of FCM's HTTP v1 API and of Google's OAuth2 token endpoint, on plain HTTP.
///
/// `POST /token`: a form (`application/x-www-form-urlencoded`) with `grant_type` =
/// `urn:ietf:params:oauth:grant-type:jwt-bearer` and an `assertion`: an RS256 JWT signed
/// by the service account's key, `iss` = its `client_email`, `aud` = the token URL,
/// `scope` including [`FCM_SCOPE`], `iat` and `exp` at most an hour apart and `exp` not
/// past. Answers `{"access_token", "expires_in": 3600, "token_type": "Bearer"}`, or 400
/// `{"error": "invalid_grant" | "unsupported_grant_type" | "invalid_request", ...}`.
///
/// `POST /v1/projects/<project>/messages:send`: `authorization: Bearer <a token it
/// issued>` (401 `UNAUTHENTICATED`), the configured project (404 `NOT_FOUND`), a JSON
/// body with a `message` with exactly one of `token`, `topic`, `condition`, `data`
/// values that are all strings, and `notification.title`/`body` strings (400
/// `INVALID_ARGUMENT`); tokens marked invalid answer 400 `INVALID_ARGUMENT`, tokens
/// marked dead 404 `UNREGISTERED`; then a scripted answer if there is one, else
/// `{"name": "projects/<project>/messages/<id>"}`.
pub struct MockFcm {
    addr: SocketAddr,
    shared: Arc<FcmShared>,
    task: JoinHandle<()>,
}

impl MockFcm {
    /// A mock for project `project_id` and service account `client_email`, whose key is
    /// [`TEST_ONLY_FCM_PRIVATE_KEY_PEM`].
    pub async fn start(project_id: &str, client_email: &str) -> MockFcm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock FCM");
        let addr = listener.local_addr().expect("mock FCM address");
        let shared = Arc::new(FcmShared {
            project_id: project_id.to_owned(),
            client_email: client_email.to_owned(),
            token_url: format!("http://{addr}/token"),
            public_key: DecodingKey::from_rsa_der(&pem_der(TEST_ONLY_FCM_PUBLIC_KEY_PEM)),
            state: Mutex::default(),
        });
        let router = axum::Router::new()
            .fallback(fcm_handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        MockFcm { addr, shared, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/token`.
    pub fn token_url(&self) -> String {
        self.shared.token_url.clone()
    }

    pub fn project_id(&self) -> &str {
        &self.shared.project_id
    }

    pub fn client_email(&self) -> &str {
        &self.shared.client_email
    }

    pub fn private_key_pem(&self) -> &'static str {
        TEST_ONLY_FCM_PRIVATE_KEY_PEM
    }

    /// From now on `token` answers 404 `UNREGISTERED`.
    pub fn mark_unregistered(&self, token: &str) {
        lock(&self.shared.state)
            .unregistered
            .insert(token.to_owned());
    }

    /// From now on `token` answers 400 `INVALID_ARGUMENT` (not a registration token).
    pub fn mark_invalid(&self, token: &str) {
        lock(&self.shared.state).invalid.insert(token.to_owned());
    }

    /// The next send that passes every check gets `answer`.
    pub fn script(&self, answer: FcmError) {
        lock(&self.shared.state).script.push_back(answer);
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.shared.state).token_requests.clone()
    }

    pub fn requests(&self) -> Vec<FcmRequest> {
        lock(&self.shared.state).requests.clone()
    }
}

impl Drop for MockFcm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fcm_handle(
    State(shared): State<Arc<FcmShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/token" {
        return fcm_token(&shared, &method, &headers, &body);
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let token = json
        .as_ref()
        .and_then(|b| b.pointer("/message/token"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let outcome = fcm_send(
        &shared,
        &method,
        &uri,
        &headers,
        json.as_ref(),
        token.as_deref(),
    );
    let (status, answer) = match &outcome {
        Ok(name) => (200, name.clone()),
        Err(error) => (error.http_status, error.error_code.clone()),
    };
    lock(&shared.state).requests.push(FcmRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: header_strings(&headers),
        body: json,
        token,
        status,
        answer,
    });
    match outcome {
        Ok(name) => json_response(200, json!({ "name": name })),
        Err(error) => error.response(),
    }
}

#[derive(Deserialize)]
struct GoogleAssertion {
    scope: String,
    iat: i64,
    exp: i64,
}

fn fcm_token(shared: &FcmShared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let refuse = |status: u16, error: &str, description: &str, claims: Option<Value>| {
        lock(&shared.state).token_requests.push(TokenRequest {
            form: form.clone(),
            claims,
            status,
            error: Some(description.to_owned()),
        });
        json_response(
            status,
            json!({"error": error, "error_description": description}),
        )
    };
    if method != Method::POST {
        return refuse(
            405,
            "invalid_request",
            "The token endpoint takes POST.",
            None,
        );
    }
    let form_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(400, "invalid_request", "Expected a form body.", None);
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(400, "unsupported_grant_type", "Invalid grant_type.", None);
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
            None,
        );
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_audience(&[&shared.token_url]);
    validation.set_issuer(&[&shared.client_email]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &shared.public_key, &validation) {
        Ok(data) => data.claims,
        Err(err) => {
            return refuse(400, "invalid_grant", &format!("Invalid JWT: {err}"), None);
        }
    };
    let Ok(assertion) = serde_json::from_value::<GoogleAssertion>(claims.clone()) else {
        return refuse(
            400,
            "invalid_grant",
            "Invalid JWT: missing scope, iat or exp.",
            Some(claims),
        );
    };
    if !assertion.scope.split(' ').any(|s| s == FCM_SCOPE) {
        return refuse(400, "invalid_scope", "Invalid OAuth scope.", Some(claims));
    }
    let now = now_secs();
    if assertion.exp - assertion.iat > 3600 || assertion.iat > now + 60 || assertion.exp < now {
        return refuse(
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            Some(claims),
        );
    }
    let mut state = lock(&shared.state);
    let access_token = format!("ya29.mock-{}-{}", state.token_requests.len() + 1, uuid_v4());
    state.issued.insert(access_token.clone());
    state.token_requests.push(TokenRequest {
        form: form.clone(),
        claims: Some(claims),
        status: 200,
        error: None,
    });
    json_response(
        200,
        json!({"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"}),
    )
}

fn fcm_send(
    shared: &FcmShared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<&Value>,
    token: Option<&str>,
) -> Result<String, FcmError> {
    let not_found = || FcmError::new(404, "NOT_FOUND", "", "Requested entity was not found.");
    let project = uri
        .path()
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/messages:send"))
        .ok_or_else(not_found)?;
    if method != Method::POST {
        return Err(FcmError::new(405, "METHOD_NOT_ALLOWED", "", "Use POST."));
    }
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut state = lock(&shared.state);
    if !bearer.is_some_and(|b| state.issued.contains(b.trim())) {
        return Err(FcmError::new(
            401,
            "UNAUTHENTICATED",
            "",
            "Request had invalid authentication credentials.",
        ));
    }
    if project != shared.project_id {
        return Err(FcmError::new(
            403,
            "PERMISSION_DENIED",
            "SENDER_ID_MISMATCH",
            "Permission denied on the project.",
        ));
    }
    let Some(message) = body
        .and_then(|b| b.get("message"))
        .filter(|m| m.is_object())
    else {
        return Err(FcmError::invalid_argument(
            "The message is missing or not JSON.",
        ));
    };
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|k| message.get(**k).is_some())
        .count();
    if targets != 1 {
        return Err(FcmError::invalid_argument(
            "Exactly one of message.token, message.topic or message.condition is required.",
        ));
    }
    if let Some(data) = message.get("data") {
        let all_strings = data
            .as_object()
            .is_some_and(|d| d.values().all(Value::is_string));
        if !all_strings {
            return Err(FcmError::invalid_argument(
                "Invalid value at 'message.data': every value must be a string.",
            ));
        }
    }
    if let Some(notification) = message.get("notification") {
        let strings = ["title", "body"]
            .iter()
            .all(|k| notification.get(*k).is_none_or(Value::is_string));
        if !notification.is_object() || !strings {
            return Err(FcmError::invalid_argument(
                "Invalid value at 'message.notification'.",
            ));
        }
    }
    if let Some(token) = token {
        if state.invalid.contains(token) {
            return Err(FcmError::invalid_argument(
                "The registration token is not a valid FCM registration token",
            ));
        }
        if state.unregistered.contains(token) {
            return Err(FcmError::unregistered());
        }
    }
    if let Some(scripted) = state.script.pop_front() {
        return Err(scripted);
    }
    state.sent += 1;
    Ok(format!(
        "projects/{}/messages/0:{}%{}",
        shared.project_id,
        1_700_000_000_000_000u64 + state.sent,
        &uuid_v4()[..8]
    ))
}

// ---------------------------------------------------------------------------------------
// The email API.

/// One request to the mock email API.
#[derive(Clone, Debug)]
pub struct MailRequest {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Option<Value>,
    pub status: u16,
    pub error_code: i64,
    /// The `MessageID` it answered.
    pub message_id: Option<String>,
}

impl MailRequest {
    /// A field of the JSON body (`From`, `To`, `Subject`, `TextBody`, `HtmlBody`,
    /// `MessageStream`, `ReplyTo`, `Headers`, ...), `Null` when absent.
    pub fn field(&self, name: &str) -> &Value {
        self.body
            .as_ref()
            .and_then(|b| b.get(name))
            .unwrap_or(&Value::Null)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.field(name).as_str()
    }
}

#[derive(Default)]
struct MailState {
    requests: Vec<MailRequest>,
    inactive: HashSet<String>,
    streams: HashSet<String>,
}

struct MailShared {
    server_token: String,
    state: Mutex<MailState>,
}

/// A mock of a Postmark-style email API, on plain HTTP.
///
/// `POST /email`: `X-Postmark-Server-Token` the server's token (401, `ErrorCode` 10),
/// `Content-Type: application/json` (415), a JSON body with `From` and `To` (422,
/// `ErrorCode` 300), `Subject`, `TextBody` and/or `HtmlBody` (422, 300), and a
/// `MessageStream` the server has, `outbound` when absent (422, 1235). A recipient
/// marked inactive answers 422 with `ErrorCode` 406. Otherwise `{"To", "SubmittedAt",
/// "MessageID", "ErrorCode": 0, "Message": "OK"}`. Streams known from the start:
/// `outbound` (transactional) and `broadcast` (marketing).
pub struct MockMail {
    addr: SocketAddr,
    shared: Arc<MailShared>,
    task: JoinHandle<()>,
}

impl MockMail {
    pub async fn start(server_token: &str) -> MockMail {
        let shared = Arc::new(MailShared {
            server_token: server_token.to_owned(),
            state: Mutex::new(MailState {
                streams: ["outbound", "broadcast"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                ..MailState::default()
            }),
        });
        let router = axum::Router::new()
            .fallback(mail_handle)
            .with_state(shared.clone());
        let (addr, task) = serve_plain(router).await;
        MockMail { addr, shared, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn server_token(&self) -> &str {
        &self.shared.server_token
    }

    /// From now on mail to `address` answers 422 / `ErrorCode` 406.
    pub fn mark_inactive(&self, address: &str) {
        lock(&self.shared.state)
            .inactive
            .insert(address.to_ascii_lowercase());
    }

    /// Another message stream the server has.
    pub fn add_stream(&self, stream: &str) {
        lock(&self.shared.state).streams.insert(stream.to_owned());
    }

    pub fn requests(&self) -> Vec<MailRequest> {
        lock(&self.shared.state).requests.clone()
    }
}

impl Drop for MockMail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The addresses of a `To` field: `a@x, "Name" <b@y>`.
pub fn mail_addresses(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(|part| {
            let part = part.trim();
            match (part.rfind('<'), part.rfind('>')) {
                (Some(open), Some(close)) if open < close => &part[open + 1..close],
                _ => part,
            }
            .trim()
            .to_ascii_lowercase()
        })
        .filter(|a| !a.is_empty())
        .collect()
}

async fn mail_handle(
    State(shared): State<Arc<MailShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let (status, reply) = mail_judge(&shared, &method, &uri, &headers, json.as_ref());
    let error_code = reply["ErrorCode"].as_i64().unwrap_or(0);
    lock(&shared.state).requests.push(MailRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: header_strings(&headers),
        body: json,
        status,
        error_code,
        message_id: reply["MessageID"].as_str().map(str::to_owned),
    });
    json_response(status, reply)
}

fn mail_judge(
    shared: &MailShared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> (u16, Value) {
    let error = |status: u16, code: i64, message: &str| {
        (status, json!({"ErrorCode": code, "Message": message}))
    };
    if uri.path() != "/email" {
        return error(404, 404, "Not found.");
    }
    if method != Method::POST {
        return error(405, 405, "Use POST.");
    }
    let token = headers
        .get("x-postmark-server-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(shared.server_token.as_str()) {
        return error(
            401,
            10,
            "Request does not contain a valid Server token. Please check that your token is correct.",
        );
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return error(
            415,
            415,
            "The request's Content-Type must be application/json.",
        );
    }
    let Some(body) = body.filter(|b| b.is_object()) else {
        return error(422, 402, "Received invalid JSON input.");
    };
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if field("From").is_none() {
        return error(422, 300, "Invalid 'From' address: ''.");
    }
    let Some(to) = field("To") else {
        return error(422, 300, "Zero recipients specified");
    };
    if field("TextBody").is_none() && field("HtmlBody").is_none() {
        return error(
            422,
            300,
            "Provide either email TextBody or HtmlBody or both.",
        );
    }
    let state = lock(&shared.state);
    let stream = field("MessageStream").unwrap_or("outbound");
    if !state.streams.contains(stream) {
        return error(
            422,
            1235,
            &format!("The message stream for the provided 'ID' ({stream}) was not found."),
        );
    }
    if mail_addresses(to)
        .iter()
        .any(|a| state.inactive.contains(a))
    {
        return error(
            422,
            406,
            "You tried to send to a recipient that has been marked as inactive.",
        );
    }
    let submitted_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    (
        200,
        json!({
            "To": to,
            "SubmittedAt": submitted_at,
            "MessageID": uuid_v4(),
            "ErrorCode": 0,
            "Message": "OK",
        }),
    )
}

// ---------------------------------------------------------------------------------------
// A signed webhook receiver.

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    pub headers: HashMap<String, String>,
    pub body: String,
    /// `x-olivine-signature` was `v1=<hex HMAC-SHA256 of "<x-olivine-timestamp>.<body>">`
    /// under the receiver's secret, and the timestamp within five minutes of now.
    pub signature_valid: bool,
    /// Why it was not.
    pub problem: Option<String>,
    pub status: u16,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct WebhookShared {
    secret: String,
    requests: Mutex<Vec<WebhookRequest>>,
    counter: AtomicU64,
}

/// A webhook receiver at `/hook` that does what a merchant's receiver should: verifies
/// `x-olivine-signature: v1=<hex HMAC-SHA256 of "<ts>.<body>">` with `ts` from
/// `x-olivine-timestamp` (at most five minutes off), answering 401 when it does not
/// hold and 200 with `x-request-id: hook-<n>` when it does.
pub struct MockWebhook {
    addr: SocketAddr,
    shared: Arc<WebhookShared>,
    task: JoinHandle<()>,
}

impl MockWebhook {
    pub async fn start(secret: &str) -> MockWebhook {
        let shared = Arc::new(WebhookShared {
            secret: secret.to_owned(),
            requests: Mutex::default(),
            counter: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(webhook_handle))
            .with_state(shared.clone());
        let (addr, task) = serve_plain(router).await;
        MockWebhook { addr, shared, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<WebhookRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for MockWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks an Olivine webhook signature: `Ok(())` or why not.
pub fn verify_olivine_signature(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    use hmac::{Hmac, Mac};
    let timestamp = timestamp.ok_or("no x-olivine-timestamp")?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("x-olivine-timestamp `{timestamp}` is not a number"))?;
    if (now_secs() - ts).abs() > 300 {
        return Err(format!(
            "x-olivine-timestamp {ts} is more than 5 minutes off"
        ));
    }
    let signature = signature.ok_or("no x-olivine-signature")?;
    let hex = signature
        .split(',')
        .find_map(|part| part.trim().strip_prefix("v1="))
        .ok_or_else(|| format!("x-olivine-signature `{signature}` has no v1="))?;
    let expected = hex_decode(hex).ok_or_else(|| format!("`{hex}` is not hexadecimal"))?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| "the signature does not match".to_owned())
}

async fn webhook_handle(
    State(shared): State<Arc<WebhookShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verdict = verify_olivine_signature(
        &shared.secret,
        header("x-olivine-timestamp"),
        header("x-olivine-signature"),
        &body,
    );
    let status = if verdict.is_ok() { 200 } else { 401 };
    lock(&shared.requests).push(WebhookRequest {
        headers: header_strings(&headers),
        body: String::from_utf8_lossy(&body).into_owned(),
        signature_valid: verdict.is_ok(),
        problem: verdict.err(),
        status,
    });
    if status == 200 {
        let n = shared.counter.fetch_add(1, Ordering::Relaxed) + 1;
        (StatusCode::OK, [("x-request-id", format!("hook-{n}"))]).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "bad signature").into_response()
    }
}
