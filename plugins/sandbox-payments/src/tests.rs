//! Every mapping, natively, with the SDK's mock HTTP; and (when `SANDBOX_PROCESSOR_URL`
//! is set) the same calls against a running sandbox processor.

use super::*;
use olivine_sdk::testing;

const BASE: &str = "http://127.0.0.1:4242";

fn settings() {
    testing::clear();
    testing::set_settings([
        ("base_url", "http://127.0.0.1:4242/"),
        ("api_key", "sk_test"),
    ]);
}

fn eur(amount: i64) -> Money {
    Money::new(amount, "EUR")
}

fn authorize_request_of(token: &str, amount: i64) -> AuthorizeRequest {
    AuthorizeRequest {
        order_id: "1042".into(),
        idempotency_key: "order-1042-authorize".into(),
        amount: eur(amount),
        source: PaymentSource::Token(token.into()),
        off_session: false,
        customer: None,
    }
}

fn operation(reference: &str, key: &str, amount: Option<i64>) -> PaymentOperation {
    PaymentOperation {
        order_id: "1042".into(),
        idempotency_key: key.into(),
        processor_reference: reference.into(),
        amount: amount.map(eur),
    }
}

fn json_response(status: u16, body: Value) -> Response {
    Response::new(status)
        .with_header("content-type", "application/json")
        .with_body(body.to_string())
}

fn authorization(status: &str, captured: i64, refunded: i64) -> Value {
    json!({
        "id": "auth_1", "object": "authorization", "status": status,
        "amount_minor": 2599, "currency": "EUR",
        "captured_minor": captured, "refunded_minor": refunded,
        "decline_reason": null, "reference": "1042",
        "card": {"brand": "visa", "last4": "4242"}, "operations": []
    })
}

fn error(status: u16, code: &str, message: &str, field: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(field) = field {
        e["field"] = field.into();
    }
    json_response(status, json!({ "error": e }))
}

/// Answers every request with `response` and authorizes "tok_ok".
fn authorize_with(response: Result<Response, HttpError>) -> Result<PaymentResult, PaymentError> {
    settings();
    testing::mock_http(move |_| response.clone());
    SandboxPayments::authorize(&authorize_request_of("tok_ok", 2599))
}

fn op_with(
    op: Op,
    amount: Option<i64>,
    response: Result<Response, HttpError>,
) -> Result<PaymentResult, PaymentError> {
    settings();
    testing::mock_http(move |_| response.clone());
    let o = operation("auth_1", "order-1042-op", amount);
    match op {
        Op::Capture => SandboxPayments::capture(&o),
        Op::Refund => SandboxPayments::refund(&o),
        Op::Void => SandboxPayments::void(&o),
    }
}

fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

#[test]
fn authorize_posts_the_token_and_the_idempotency_key() {
    let result = authorize_with(Ok(json_response(201, authorization("authorized", 0, 0)))).unwrap();
    assert_eq!(result.status, PaymentStatus::Approved);
    assert_eq!(result.processor_reference, "auth_1");
    assert_eq!(result.message, "authorized €25.99 on visa ending 4242");
    let sent = testing::sent_requests();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, format!("{BASE}/v1/authorizations"));
    assert_eq!(
        r.header_value("idempotency-key"),
        Some("order-1042-authorize")
    );
    assert_eq!(r.header_value("authorization"), Some("Bearer sk_test"));
    assert_eq!(r.header_value("content-type"), Some("application/json"));
    assert_eq!(
        body_of(r),
        json!({"token": "tok_ok", "off_session": false, "amount_minor": 2599, "currency": "EUR", "reference": "1042"})
    );
}

#[test]
fn a_saved_customer_is_charged_off_session() {
    settings();
    testing::mock_http(|_| Ok(json_response(201, authorization("authorized", 0, 0))));
    let mut request = authorize_request_of("", 2599);
    request.source = PaymentSource::Saved("cus_7".into());
    request.off_session = true;
    SandboxPayments::authorize(&request).unwrap();
    assert_eq!(
        body_of(&testing::sent_requests()[0]),
        json!({"customer": "cus_7", "off_session": true, "amount_minor": 2599, "currency": "EUR", "reference": "1042"})
    );
    // A saved reference that is not a customer never reaches the processor.
    settings();
    request.source = PaymentSource::Saved("tok_1".into());
    assert!(matches!(
        SandboxPayments::authorize(&request),
        Err(PaymentError::Invalid(_))
    ));
    assert!(testing::sent_requests().is_empty());
}

#[test]
fn saving_a_payment_method_makes_a_customer() {
    settings();
    testing::mock_http(|_| {
        Ok(json_response(
            201,
            json!({"id": "cus_1", "object": "customer", "reference": "c_9",
                   "payment_method": {"brand": "visa", "last4": "4242"}}),
        ))
    });
    let saved = SandboxPayments::save_payment_method(&SaveRequest {
        payment_token: "tok_ok".into(),
        idempotency_key: "save-1".into(),
        customer: Some(CustomerRef {
            pseudonym: "c_9".into(),
            segments: vec![],
        }),
    })
    .unwrap();
    assert_eq!(saved.reference, "cus_1");
    assert_eq!(saved.label, "Visa ending 4242");
    let sent = testing::sent_requests();
    assert_eq!(sent[0].url, format!("{BASE}/v1/customers"));
    assert_eq!(sent[0].header_value("idempotency-key"), Some("save-1"));
    assert_eq!(
        body_of(&sent[0]),
        json!({"token": "tok_ok", "reference": "c_9"})
    );
    // An unknown token is the processor refusing the request.
    settings();
    testing::mock_http(|_| {
        Ok(error(
            422,
            "invalid_request",
            "unknown token",
            Some("token"),
        ))
    });
    let refused = SandboxPayments::save_payment_method(&SaveRequest {
        payment_token: "tok_gone".into(),
        idempotency_key: "save-2".into(),
        customer: None,
    });
    assert!(matches!(refused, Err(PaymentError::Invalid(m)) if m.contains("token")));
}

#[test]
fn lost_and_stolen_cards_are_hard_declines() {
    let mut declined = authorization("declined", 0, 0);
    for reason in ["lost_card", "stolen_card"] {
        declined["decline_reason"] = reason.into();
        declined["decline_type"] = "hard".into();
        assert_eq!(
            authorize_with(Ok(json_response(201, declined.clone()))),
            Err(PaymentError::Declined(Decline {
                message: "Your card cannot be used. Please use another card.".into(),
                hard: true,
            }))
        );
    }
    declined["decline_reason"] = "insufficient_funds".into();
    declined["decline_type"] = "soft".into();
    assert!(matches!(
        authorize_with(Ok(json_response(201, declined))),
        Err(PaymentError::Declined(Decline { hard: false, .. }))
    ));
}

#[test]
fn no_api_key_no_authorization_header() {
    testing::clear();
    testing::set_settings([("base_url", BASE)]);
    testing::mock_http(|_| Ok(json_response(201, authorization("authorized", 0, 0))));
    SandboxPayments::authorize(&authorize_request_of("tok_ok", 2599)).unwrap();
    assert_eq!(
        testing::sent_requests()[0].header_value("authorization"),
        None
    );
}

#[test]
fn declines_are_declined_with_a_message_for_the_shopper() {
    let mut declined = authorization("declined", 0, 0);
    declined["decline_reason"] = "card_declined".into();
    declined["decline_message"] = "internal wording".into();
    assert_eq!(
        authorize_with(Ok(json_response(201, declined.clone()))),
        Err(PaymentError::Declined(Decline {
            message: "Your card was declined. Please use another card.".into(),
            hard: false,
        }))
    );
    declined["decline_reason"] = "insufficient_funds".into();
    assert_eq!(
        authorize_with(Ok(json_response(201, declined.clone()))),
        Err(PaymentError::Declined(Decline {
            message: "Your card has insufficient funds. Please use another card.".into(),
            hard: false,
        }))
    );
    declined["decline_reason"] = "something_new".into();
    assert!(matches!(
        authorize_with(Ok(json_response(201, declined))),
        Err(PaymentError::Declined(d)) if d.message.starts_with("Your card was declined")
    ));
    // A processor that answers declines with 402 is understood as well.
    assert!(matches!(
        authorize_with(Ok(json_response(402, json!({"decline_reason": "insufficient_funds"})))),
        Err(PaymentError::Declined(d)) if d.message.contains("insufficient funds")
    ));
    assert!(matches!(
        authorize_with(Ok(Response::new(402))),
        Err(PaymentError::Declined(_))
    ));
}

#[test]
fn server_errors_timeouts_and_transport_failures_are_retryable() {
    for response in [
        Ok(error(
            503,
            "processor_unavailable",
            "temporary processing error",
            None,
        )),
        Ok(error(
            504,
            "timeout",
            "the card network did not answer",
            None,
        )),
        Ok(Response::new(500)),
        Ok(Response::new(502).with_body("<html>bad gateway</html>")),
        Ok(error(429, "rate_limited", "slow down", None)),
        Ok(error(
            409,
            "idempotency_key_in_use",
            "still being processed",
            None,
        )),
        Err(HttpError::Timeout),
        Err(HttpError::Failed("connection refused".into())),
    ] {
        let shown = format!("{response:?}");
        assert!(
            matches!(
                authorize_with(response.clone()),
                Err(PaymentError::Retryable(_))
            ),
            "authorize {shown}"
        );
        for op in [Op::Capture, Op::Refund, Op::Void] {
            assert!(
                matches!(
                    op_with(op, None, response.clone()),
                    Err(PaymentError::Retryable(_))
                ),
                "{op:?} {shown}"
            );
        }
    }
    let Err(PaymentError::Retryable(message)) = authorize_with(Ok(error(
        503,
        "processor_unavailable",
        "temporary processing error",
        None,
    ))) else {
        panic!()
    };
    assert!(
        message.contains("503") && message.contains("temporary processing error"),
        "{message}"
    );
    // Retryable outcomes are logged as warnings.
    assert!(
        testing::take_logs()
            .iter()
            .any(|(_, line)| line.contains("retryable"))
    );
}

#[test]
fn other_client_errors_and_denied_hosts_are_invalid() {
    let cases = [
        (
            error(
                400,
                "idempotency_key_required",
                "send an Idempotency-Key header",
                Some("Idempotency-Key"),
            ),
            "Idempotency-Key",
        ),
        (
            error(401, "unauthorized", "missing or wrong API key", None),
            "API key",
        ),
        (
            error(404, "not_found", "no such authorization", None),
            "no such authorization",
        ),
        (
            error(422, "invalid_request", "unknown token", Some("token")),
            "token: unknown token",
        ),
        (
            error(
                409,
                "idempotency_key_reused",
                "used with a different request",
                None,
            ),
            "different request",
        ),
        (Response::new(418).with_body("teapot"), "teapot"),
        (Response::new(301), "301"),
    ];
    for (response, needle) in cases {
        let status = response.status;
        match authorize_with(Ok(response)) {
            Err(PaymentError::Invalid(message)) => {
                assert!(message.contains(needle), "{status}: {message}")
            }
            other => panic!("{status}: {other:?}"),
        }
    }
    assert!(matches!(
        authorize_with(Err(HttpError::Denied("127.0.0.1:4242 is not granted".into()))),
        Err(PaymentError::Invalid(m)) if m.contains("grant")
    ));
}

#[test]
fn garbled_success_answers_are_retryable() {
    for response in [
        Response::new(201).with_body("not json"),
        Response::new(200),
        json_response(201, json!([1, 2])),
        json_response(201, json!({"status": "authorized"})), // no id
        json_response(201, json!({"id": "auth_1", "status": "pending_review"})),
        json_response(201, json!({"id": "auth_1"})),
    ] {
        let shown = format!("{response:?}");
        assert!(
            matches!(
                authorize_with(Ok(response)),
                Err(PaymentError::Retryable(_))
            ),
            "{shown}"
        );
    }
    // A capture answered with an authorization that is not captured is not a success.
    assert!(matches!(
        op_with(
            Op::Capture,
            None,
            Ok(json_response(200, authorization("authorized", 0, 0)))
        ),
        Err(PaymentError::Retryable(_))
    ));
    assert!(matches!(
        op_with(
            Op::Void,
            None,
            Ok(json_response(200, authorization("captured", 5, 0)))
        ),
        Err(PaymentError::Retryable(_))
    ));
}

#[test]
fn capture_refund_void_requests_and_results() {
    let mut captured = authorization("captured", 1000, 0);
    captured["operation"] = json!({"id": "cap_1", "kind": "capture", "amount_minor": 1000});
    let result = op_with(Op::Capture, Some(1000), Ok(json_response(200, captured))).unwrap();
    assert_eq!(result.status, PaymentStatus::Approved);
    assert_eq!(result.processor_reference, "auth_1");
    assert_eq!(
        result.message,
        "captured €10.00 (€10.00 of €25.99 captured)"
    );
    let r = &testing::sent_requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, format!("{BASE}/v1/authorizations/auth_1/capture"));
    assert_eq!(r.header_value("idempotency-key"), Some("order-1042-op"));
    assert_eq!(r.header_value("authorization"), Some("Bearer sk_test"));
    assert_eq!(body_of(r), json!({"amount_minor": 1000, "currency": "EUR"}));

    // Full capture: no amount in the body.
    let mut full = authorization("captured", 2599, 0);
    full["operation"] = json!({"id": "cap_2", "kind": "capture", "amount_minor": 2599});
    op_with(Op::Capture, None, Ok(json_response(200, full))).unwrap();
    assert_eq!(body_of(&testing::sent_requests()[0]), json!({}));

    let mut refunded = authorization("captured", 2599, 500);
    refunded["operation"] = json!({"id": "ref_1", "kind": "refund", "amount_minor": 500});
    let result = op_with(Op::Refund, Some(500), Ok(json_response(200, refunded))).unwrap();
    assert_eq!(
        result.message,
        "refunded €5.00 (€5.00 of €25.99 captured refunded)"
    );
    assert_eq!(
        testing::sent_requests()[0].url,
        format!("{BASE}/v1/authorizations/auth_1/refund")
    );
    // Fully refunded is a success too.
    let result = op_with(
        Op::Refund,
        None,
        Ok(json_response(200, authorization("refunded", 2599, 2599))),
    )
    .unwrap();
    assert_eq!(result.status, PaymentStatus::Approved);

    let mut voided = authorization("voided", 0, 0);
    voided["operation"] = json!({"id": "void_1", "kind": "void", "amount_minor": 2599});
    let result = op_with(Op::Void, None, Ok(json_response(200, voided))).unwrap();
    assert_eq!(result.message, "voided the authorization of €25.99");
    let r = &testing::sent_requests()[0];
    assert_eq!(r.url, format!("{BASE}/v1/authorizations/auth_1/void"));
    assert_eq!(body_of(r), json!({}));
}

#[test]
fn conflicts_on_capture_refund_void_are_invalid_with_the_processors_message() {
    let cases = [
        (
            Op::Capture,
            error(
                409,
                "authorization_voided",
                "the authorization was voided; it cannot be captured",
                None,
            ),
            "voided",
        ),
        (
            Op::Capture,
            error(
                409,
                "amount_exceeds_authorized",
                "cannot capture 3000: only 2599 of 2599 remains uncaptured",
                None,
            ),
            "cannot capture 3000",
        ),
        (
            Op::Refund,
            error(
                409,
                "amount_exceeds_captured",
                "cannot refund 9999: only 1000 of the 1000 captured is left to refund",
                None,
            ),
            "cannot refund 9999",
        ),
        (
            Op::Refund,
            error(409, "nothing_captured", "nothing has been captured", None),
            "nothing has been captured",
        ),
        (
            Op::Void,
            error(
                409,
                "already_captured",
                "cannot void after a capture; refund instead",
                None,
            ),
            "refund instead",
        ),
        (
            Op::Void,
            error(404, "not_found", "no such authorization", None),
            "no such authorization",
        ),
        (
            Op::Capture,
            error(
                422,
                "invalid_request",
                "the authorization is in USD",
                Some("currency"),
            ),
            "currency: the authorization is in USD",
        ),
    ];
    for (op, response, needle) in cases {
        match op_with(op, None, Ok(response)) {
            Err(PaymentError::Invalid(message)) => {
                assert!(message.contains(needle), "{op:?}: {message}");
                assert!(message.contains("answered 4"), "{op:?}: {message}");
            }
            other => panic!("{op:?}: {other:?}"),
        }
    }
    // Invalid outcomes are logged as errors.
    assert!(testing::take_logs().iter().any(|(level, line)| matches!(
        level,
        olivine_sdk::log::Level::Error
    ) && line.contains("invalid")));
}

#[test]
fn bad_requests_are_refused_before_anything_is_sent() {
    settings();
    testing::mock_http(|_| panic!("nothing may be sent"));
    let invalid =
        |r: Result<PaymentResult, PaymentError>| matches!(r, Err(PaymentError::Invalid(_)));
    // A card number where a token belongs.
    assert!(invalid(SandboxPayments::authorize(&authorize_request_of(
        "4242 4242 4242 4242",
        100
    ))));
    assert!(invalid(SandboxPayments::authorize(&authorize_request_of(
        "", 100
    ))));
    assert!(invalid(SandboxPayments::authorize(&authorize_request_of(
        "tok_ok", 0
    ))));
    assert!(invalid(SandboxPayments::authorize(&authorize_request_of(
        "tok_ok", -5
    ))));
    let mut no_key = authorize_request_of("tok_ok", 100);
    no_key.idempotency_key = " ".into();
    assert!(invalid(SandboxPayments::authorize(&no_key)));
    let mut no_order = authorize_request_of("tok_ok", 100);
    no_order.order_id = String::new();
    assert!(invalid(SandboxPayments::authorize(&no_order)));

    for reference in [
        "../../v1/tokens",
        "auth_1/void",
        "auth 1",
        "auth_1?x=1",
        "ä",
    ] {
        assert!(
            invalid(SandboxPayments::capture(&operation(reference, "k", None))),
            "{reference}"
        );
    }
    assert!(invalid(SandboxPayments::capture(&operation(
        "auth_1", "", None
    ))));
    assert!(invalid(SandboxPayments::capture(&operation(
        "auth_1", "k\n", None
    ))));
    assert!(invalid(SandboxPayments::capture(&operation(
        "auth_1",
        "k",
        Some(0)
    ))));
    assert!(invalid(SandboxPayments::refund(&operation(
        "auth_1",
        "k",
        Some(-1)
    ))));
    assert!(invalid(SandboxPayments::void(&operation(
        "auth_1",
        "k",
        Some(100)
    ))));
    assert!(testing::sent_requests().is_empty());
}

#[test]
fn settings_are_checked() {
    testing::clear();
    testing::mock_http(|_| panic!("nothing may be sent"));
    assert!(matches!(
        SandboxPayments::authorize(&authorize_request_of("tok_ok", 100)),
        Err(PaymentError::Invalid(m)) if m.contains("base_url")
    ));
    for bad in [
        "ftp://h",
        "127.0.0.1:4242",
        "http://",
        "http:///v1",
        "http://h/x?y",
    ] {
        assert!(
            Config::from_settings(&Settings::from_pairs([("base_url", bad)])).is_err(),
            "{bad}"
        );
    }
    let c = Config::from_settings(&Settings::from_pairs([
        ("base_url", " http://sandbox.local:4242/ "),
        ("api_key", "  "),
    ]))
    .unwrap();
    assert_eq!(
        c,
        Config {
            base_url: "http://sandbox.local:4242".into(),
            api_key: None
        }
    );
}

#[test]
fn void_without_a_reference_voids_the_orders_open_authorizations() {
    settings();
    testing::mock_http(|r| {
        if r.method == "GET" {
            assert_eq!(
                r.url,
                format!("{BASE}/v1/authorizations?reference=order%201042%2F%C3%A9")
            );
            assert_eq!(r.header_value("idempotency-key"), None);
            assert_eq!(r.header_value("authorization"), Some("Bearer sk_test"));
            let mut open = authorization("authorized", 0, 0);
            open["id"] = "auth_open".into();
            let mut declined = authorization("declined", 0, 0);
            declined["id"] = "auth_declined".into();
            let mut done = authorization("voided", 0, 0);
            done["id"] = "auth_done".into();
            return Ok(json_response(200, json!({"data": [declined, open, done]})));
        }
        assert_eq!(r.url, format!("{BASE}/v1/authorizations/auth_open/void"));
        assert_eq!(
            r.header_value("idempotency-key"),
            Some("order-1042-void:auth_open")
        );
        let mut voided = authorization("voided", 0, 0);
        voided["id"] = "auth_open".into();
        Ok(json_response(200, voided))
    });
    let mut o = operation("", "order-1042-void", None);
    o.order_id = "order 1042/é".into();
    let result = SandboxPayments::void(&o).unwrap();
    assert_eq!(result.status, PaymentStatus::Approved);
    assert_eq!(result.processor_reference, "auth_open");
    assert_eq!(result.message, "voided auth_open");
    assert_eq!(testing::sent_requests().len(), 2);

    // Nothing open: nothing to do, and that is fine.
    settings();
    testing::mock_http(|_| Ok(json_response(200, json!({"data": []}))));
    let result = SandboxPayments::void(&operation("", "k", None)).unwrap();
    assert_eq!(result.processor_reference, "");
    assert!(result.message.contains("nothing to void"));

    // Already captured: refund it instead.
    settings();
    testing::mock_http(|_| {
        Ok(json_response(
            200,
            json!({"data": [authorization("captured", 5, 0)]}),
        ))
    });
    assert!(matches!(
        SandboxPayments::void(&operation("", "k", None)),
        Err(PaymentError::Invalid(m)) if m.contains("refund")
    ));

    // The lookup failing is retryable, like any other call.
    settings();
    testing::mock_http(|_| Err(HttpError::Timeout));
    assert!(matches!(
        SandboxPayments::void(&operation("", "k", None)),
        Err(PaymentError::Retryable(_))
    ));
}

#[test]
fn card_numbers_are_recognised() {
    assert!(looks_like_card_number("4242424242424242"));
    assert!(looks_like_card_number("4000-0000-0000-0002"));
    assert!(looks_like_card_number("378282246310005"));
    assert!(!looks_like_card_number("4242424242424241"));
    assert!(!looks_like_card_number("tok_4242424242424242"));
    assert!(!looks_like_card_number("424242424242"));
    assert!(!looks_like_card_number(""));
}

#[test]
fn the_fixture_names_the_required_setting() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let manifest = std::fs::read_to_string(format!("{dir}/plugin.toml")).unwrap();
    assert!(manifest.contains("world = \"payment-adapter\""));
    assert!(manifest.contains("[settings.base_url]\ntype = \"string\"\nrequired = true"));
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/fixtures/missing-settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        fixture["expect"]["settings_err"],
        json!(["settings.base_url"])
    );
    assert_eq!(fixture["settings"], json!({}));
}

/// The calls against a running sandbox processor, through a small blocking HTTP client
/// standing in for the host (the same one-request-per-connection shape):
///
/// ```sh
/// cargo run --manifest-path examples/sandbox-processor/Cargo.toml -- --addr 127.0.0.1:4242 --timeout-secs 1
/// SANDBOX_PROCESSOR_URL=http://127.0.0.1:4242 cargo test --manifest-path plugins/Cargo.toml -p sandbox-payments live
/// ```
///
/// With a processor started with `--api-key K`, set `SANDBOX_PROCESSOR_API_KEY=K` too.
#[test]
fn live_against_the_sandbox_processor() {
    let Ok(base) = std::env::var("SANDBOX_PROCESSOR_URL") else {
        eprintln!("SANDBOX_PROCESSOR_URL not set; skipped");
        return;
    };
    live::run(&base);
}

mod live {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn send(request: &Request) -> Result<Response, HttpError> {
        let rest = request.url.strip_prefix("http://").expect("http:// only");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream =
            TcpStream::connect(authority).map_err(|e| HttpError::Failed(e.to_string()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            request.method,
            if path.is_empty() { "/" } else { path },
            request.body.len()
        );
        for (name, value) in &request.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&request.body).unwrap();
        let mut raw = Vec::new();
        if let Err(e) = stream.read_to_end(&mut raw) {
            return Err(match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => HttpError::Timeout,
                _ => HttpError::Failed(e.to_string()),
            });
        }
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        Ok(Response::new(status).with_body(raw[split + 4..].to_vec()))
    }

    fn token(base: &str, number: &str) -> String {
        let r = send(&Request::post(format!("{base}/v1/tokens")).json(
            json!({"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"}).to_string(),
        ))
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        serde_json::from_slice::<Value>(&r.body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn authorize(
        order: &str,
        key: &str,
        token: &str,
        amount: i64,
    ) -> Result<PaymentResult, PaymentError> {
        SandboxPayments::authorize(&AuthorizeRequest {
            order_id: order.into(),
            idempotency_key: key.into(),
            amount: eur(amount),
            source: PaymentSource::Token(token.into()),
            off_session: false,
            customer: None,
        })
    }

    pub fn run(base: &str) {
        testing::clear();
        let key = std::env::var("SANDBOX_PROCESSOR_API_KEY").unwrap_or_default();
        testing::set_settings([("base_url", base), ("api_key", key.as_str())]);
        testing::mock_http(send);
        let run = std::process::id();
        let order = |n: &str| format!("live-{run}-{n}");

        // Approve, capture part, refund part, then illegal operations.
        let ok = token(base, "4242424242424242");
        let a = authorize(&order("a"), &order("a-auth"), &ok, 10_000).unwrap();
        assert_eq!(a.status, PaymentStatus::Approved);
        let again = authorize(&order("a"), &order("a-auth"), &ok, 10_000).unwrap();
        assert_eq!(
            again.processor_reference, a.processor_reference,
            "idempotent"
        );
        let op = |key: &str, amount: Option<i64>| PaymentOperation {
            order_id: order("a"),
            idempotency_key: order(key),
            processor_reference: a.processor_reference.clone(),
            amount: amount.map(eur),
        };
        let c = SandboxPayments::capture(&op("a-cap", Some(6000))).unwrap();
        assert!(c.message.starts_with("captured €60.00"), "{}", c.message);
        let r = SandboxPayments::refund(&op("a-ref", Some(2500))).unwrap();
        assert!(r.message.starts_with("refunded €25.00"), "{}", r.message);
        assert!(matches!(
            SandboxPayments::refund(&op("a-ref-2", Some(3501))),
            Err(PaymentError::Invalid(m)) if m.contains("amount_exceeds_captured")
        ));
        assert!(matches!(
            SandboxPayments::void(&op("a-void", None)),
            Err(PaymentError::Invalid(m)) if m.contains("already_captured")
        ));
        SandboxPayments::capture(&op("a-cap-rest", None)).unwrap();
        SandboxPayments::refund(&op("a-ref-rest", None)).unwrap();

        // Void, then no capture.
        let v = authorize(&order("v"), &order("v-auth"), &ok, 500).unwrap();
        let vop = |key: &str| PaymentOperation {
            order_id: order("v"),
            idempotency_key: order(key),
            processor_reference: v.processor_reference.clone(),
            amount: None,
        };
        SandboxPayments::void(&vop("v-void")).unwrap();
        assert!(matches!(
            SandboxPayments::capture(&vop("v-cap")),
            Err(PaymentError::Invalid(m)) if m.contains("voided")
        ));

        // Declines.
        for (number, needle) in [
            ("4000000000000002", "declined"),
            ("4000000000009995", "insufficient"),
        ] {
            let t = token(base, number);
            assert!(matches!(
                authorize(&order(number), &order(number), &t, 100),
                Err(PaymentError::Declined(d)) if d.message.contains(needle)
            ));
        }

        // A saved customer charged off session; a card that declines later, soft and hard.
        for (number, hard) in [("4000000000000341", false), ("4000000000000358", true)] {
            let t = token(base, number);
            let saved = SandboxPayments::save_payment_method(&SaveRequest {
                payment_token: t.clone(),
                idempotency_key: order(&format!("save-{number}")),
                customer: None,
            })
            .unwrap();
            assert!(authorize(&order(number), &order(number), &t, 100).is_ok());
            let renewal = SandboxPayments::authorize(&AuthorizeRequest {
                order_id: order(&format!("{number}-renewal")),
                idempotency_key: order(&format!("{number}-renewal")),
                amount: eur(100),
                source: PaymentSource::Saved(saved.reference),
                off_session: true,
                customer: None,
            });
            assert!(
                matches!(&renewal, Err(PaymentError::Declined(d)) if d.hard == hard),
                "{renewal:?}"
            );
        }

        // Retry once, then approved under the same key.
        let t = token(base, "4000000000000119");
        assert!(matches!(
            authorize(&order("r"), &order("r-auth"), &t, 100),
            Err(PaymentError::Retryable(_))
        ));
        assert!(authorize(&order("r"), &order("r-auth"), &t, 100).is_ok());

        // Timeout (run the processor with --timeout-secs 1): 504, retryable.
        let t = token(base, "4000000000000036");
        assert!(matches!(
            authorize(&order("t"), &order("t-auth"), &t, 100),
            Err(PaymentError::Retryable(_))
        ));

        // A crash between authorize and the order: void by order id.
        let o = authorize(&order("crash"), &order("crash-auth"), &ok, 700).unwrap();
        let result = SandboxPayments::void(&PaymentOperation {
            order_id: order("crash"),
            idempotency_key: order("crash-void"),
            processor_reference: String::new(),
            amount: None,
        })
        .unwrap();
        assert_eq!(result.processor_reference, o.processor_reference);

        // A wrong API key is invalid (when the processor runs with one).
        testing::set_settings([("base_url", base), ("api_key", "wrong")]);
        let wrong = authorize(&order("k"), &order("k-auth"), &ok, 100);
        if !key.is_empty() {
            assert!(
                matches!(&wrong, Err(PaymentError::Invalid(m)) if m.contains("401")),
                "{wrong:?}"
            );
        }
        testing::clear();
    }
}
