//! Wire codecs against the bytes ion-sfu's Go relay really sends
//! (tests/fixtures/ion-sfu-wire), plus variants, rejections and properties.

use bytes::Bytes;
use proptest::prelude::*;
use relay_proto::wire::{
    Announcement, CandidateProtocol, CandidateType, CodecParameters, DecodeError, DtlsFingerprint,
    DtlsParameters, DtlsRole, Encodings, Envelope, Extension, HeaderExtensionMap, IceParameters,
    LayerEncoding, OriginReport, RtcpFeedback, RtxEncoding, SENDER_REPORT_EVENT, SctpCapabilities,
    Signal, SignalCandidate, TRACK_REMOVE_EVENT, TrackExtensions, TrackInfo, TrackRemove,
    TrackSignal,
};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/ion-sfu-wire/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    bytes
}

fn envelope_lines() -> Vec<Vec<u8>> {
    fixture("envelopes.jsonl")
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Asserts that two JSON trees have the same keys and value kinds, recursively.
/// Array elements are all compared with the reference's first element.
fn assert_same_shape(ours: &Value, reference: &Value, path: &str) {
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    assert_eq!(kind(ours), kind(reference), "kind differs at {path}");
    match (ours, reference) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "keys differ at {path}");
            for (k, v) in a {
                assert_same_shape(v, &b[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.is_empty(), b.is_empty(), "emptiness differs at {path}");
            if let Some(first) = b.first() {
                for (i, v) in a.iter().enumerate() {
                    assert_same_shape(v, first, &format!("{path}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

fn offer() -> Signal {
    Signal::decode(&fixture("offer.json")).expect("offer.json decodes")
}

fn sample_codec() -> CodecParameters {
    CodecParameters {
        mime_type: "video/VP8".into(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![RtcpFeedback {
            typ: "nack".into(),
            parameter: "pli".into(),
        }],
        payload_type: 96,
    }
}

fn is_malformed<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> bool {
    matches!(r, Err(DecodeError::Malformed { .. }))
}

fn is_invalid<T: std::fmt::Debug>(r: Result<T, DecodeError>) -> bool {
    matches!(r, Err(DecodeError::Invalid { .. }))
}

// ---- golden fixtures ----------------------------------------------------

#[test]
fn fixture_offer_and_answer_decode() {
    let o = offer();
    assert_eq!(o.ice_candidates.len(), 1);
    let c = &o.ice_candidates[0];
    assert_eq!(c.foundation, "2878742611");
    assert_eq!(c.priority, 2_130_706_431);
    assert_eq!(c.address, "127.0.0.1");
    assert_eq!(c.protocol, CandidateProtocol::Udp);
    assert_eq!(c.port, 34284);
    assert_eq!(c.typ, CandidateType::Host);
    assert_eq!(c.component, 1);
    assert_eq!((c.related_address.as_str(), c.related_port), ("", 0));
    assert_eq!(o.ice_parameters.username_fragment, "CTrSqlcGdVlBKTDY");
    assert!(!o.ice_parameters.ice_lite);
    assert_eq!(o.dtls_parameters.role, DtlsRole::Auto);
    let fps = o
        .dtls_parameters
        .fingerprints
        .as_ref()
        .expect("fingerprints");
    assert_eq!(fps.len(), 1);
    assert_eq!(fps[0].algorithm, "sha-256");
    let fp = fps[0].to_bytes().expect("fingerprint parses");
    assert_eq!(fp.len(), 32);
    assert_eq!((fp[0], fp[31]), (0x3d, 0xde));
    assert_eq!(o.sctp_capabilities.max_message_size, 0);
    assert_eq!(o.relay, None);

    let a = Signal::decode(&fixture("answer.json")).expect("answer.json decodes");
    assert_eq!(a.ice_candidates[0].port, 35692);
    assert_eq!(
        a.ice_parameters.password,
        "jxiZcYqbFUBHHvCZMRdNVvfeeUaRIwvF"
    );
    assert_eq!(a.dtls_parameters.role, DtlsRole::Auto);
    assert_ne!(a, o);
}

#[test]
fn fixture_envelopes_decode() {
    let envs: Vec<Envelope> = envelope_lines()
        .iter()
        .map(|l| Envelope::decode(l).expect("envelope line decodes"))
        .collect();
    assert_eq!(envs.len(), 8);
    assert!(envs.iter().any(|e| e.id > 1 << 63), "an id above 2^63");
    assert_eq!(envs[2].id, 18_025_806_029_957_822_922);
    assert_eq!(envs[2].event, "echo");
    assert_eq!(envs[2].payload.as_deref(), Some(&b"ping-1"[..]));
    assert!(envs[..4].iter().all(|e| e.reply));
    assert!(envs[4..].iter().all(|e| !e.reply));
    assert_eq!(
        envs[0].payload.as_deref(),
        Some(&b"hello 0 from offer-peer-1"[..])
    );
    let null_reply = &envs[3];
    assert_eq!(null_reply.event, "ion_relay_request");
    assert_eq!(null_reply.payload, None);
    assert_eq!(null_reply.id, envs[7].id);
}

#[test]
fn fixture_track_signal_decodes() {
    let t = TrackSignal::decode(&fixture("track-signal.json")).expect("track signal decodes");
    assert_eq!(t.encodings.rid, "");
    assert_eq!(t.encodings.ssrc, 4_248_672_012);
    assert_eq!(t.encodings.payload_type, 96);
    assert_eq!(t.encodings.rtx.ssrc, 0);
    assert_eq!(t.ice_parameters, IceParameters::default());
    assert_eq!(t.dtls_parameters.role, DtlsRole::Unset);
    assert_eq!(t.dtls_parameters.fingerprints, None);
    assert_eq!(t.track_info.stream_id, "stream0");
    assert_eq!(t.track_info.track_id, "video0");
    let c = &t.track_info.codec_parameters;
    assert_eq!(c.mime_type, "video/VP8");
    assert_eq!(c.clock_rate, 90_000);
    assert_eq!(c.channels, 0);
    assert_eq!(c.payload_type, 96);
    assert_eq!(c.rtcp_feedback.len(), 4);
    assert_eq!(
        c.rtcp_feedback[3],
        RtcpFeedback {
            typ: "nack".into(),
            parameter: "pli".into()
        }
    );
}

#[test]
fn relay_request_payload_is_the_track_signal() {
    let request = envelope_lines()
        .iter()
        .map(|l| Envelope::decode(l).unwrap())
        .find(|e| e.event == "ion_relay_request" && !e.reply)
        .expect("an ion_relay_request request");
    let payload = request.payload.expect("request has a payload");
    assert_eq!(&payload[..], &fixture("track-signal.json")[..]);
    let from_envelope = TrackSignal::decode(&payload).unwrap();
    let from_file = TrackSignal::decode(&fixture("track-signal.json")).unwrap();
    assert_eq!(from_envelope, from_file);
}

#[test]
fn fixtures_reencode_byte_identical() {
    for name in ["offer.json", "answer.json"] {
        let bytes = fixture(name);
        let re = Signal::decode(&bytes).unwrap().encode();
        assert_eq!(
            String::from_utf8_lossy(&re),
            String::from_utf8_lossy(&bytes),
            "{name}"
        );
    }
    for line in envelope_lines() {
        let env = Envelope::decode(&line).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&env.encode()),
            String::from_utf8_lossy(&line)
        );
        assert_eq!(env.encoded_len(), line.len());
    }
    let bytes = fixture("track-signal.json");
    let re = TrackSignal::decode(&bytes).unwrap().encode();
    assert_eq!(
        String::from_utf8_lossy(&re),
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn encoded_signal_has_fixture_keys_and_types() {
    let ours = Signal {
        ice_candidates: vec![SignalCandidate {
            foundation: "1".into(),
            priority: 1,
            address: "10.0.0.1".into(),
            protocol: CandidateProtocol::Udp,
            port: 5000,
            typ: CandidateType::Srflx,
            component: 1,
            related_address: "192.168.1.2".into(),
            related_port: 5001,
            tcp_type: String::new(),
        }],
        ice_parameters: IceParameters {
            username_fragment: "u".into(),
            password: "p".into(),
            ice_lite: false,
        },
        dtls_parameters: DtlsParameters {
            role: DtlsRole::Auto,
            fingerprints: Some(vec![DtlsFingerprint::from_bytes("sha-256", &[7; 32])]),
        },
        sctp_capabilities: SctpCapabilities::default(),
        relay: None,
    };
    assert_same_shape(&json(&ours.encode()), &json(&fixture("offer.json")), "$");
    assert_same_shape(&json(&ours.encode()), &json(&fixture("answer.json")), "$");
}

#[test]
fn encoded_track_signal_has_fixture_keys_and_types() {
    let ours = TrackSignal::new(42, "s".into(), "t".into(), sample_codec());
    assert_same_shape(
        &json(&ours.encode()),
        &json(&fixture("track-signal.json")),
        "$",
    );
    // The base-protocol shape Go sends.
    assert_eq!(ours.encodings.payload_type, 96);
    assert_eq!(ours.encodings.rtx, RtxEncoding { ssrc: 0 });
    assert_eq!(ours.dtls_parameters.role, DtlsRole::Unset);
    assert_eq!(ours.dtls_parameters.fingerprints, None);
}

#[test]
fn encoded_envelope_has_fixture_keys_and_types() {
    let lines = envelope_lines();
    let with_payload = Envelope {
        id: 1,
        reply: false,
        event: "e".into(),
        payload: Some(Bytes::from_static(b"x")),
    };
    assert_same_shape(&json(&with_payload.encode()), &json(&lines[0]), "$");
    let without = Envelope {
        payload: None,
        ..with_payload
    };
    assert_same_shape(&json(&without.encode()), &json(&lines[3]), "$");
}

// ---- accepted variants ----------------------------------------------------

#[test]
fn accepts_string_enums() {
    let input = br#"{"iceCandidates":[
        {"protocol":"udp","type":"host"},
        {"protocol":"TCP","type":"srflx","tcpType":"passive"},
        {"protocol":"Udp","type":"prflx"},
        {"protocol":2,"type":"RELAY"}],
      "dtlsParameters":{"role":"server"}}"#;
    let s = Signal::decode(input).unwrap();
    let got: Vec<_> = s
        .ice_candidates
        .iter()
        .map(|c| (c.protocol, c.typ))
        .collect();
    assert_eq!(
        got,
        [
            (CandidateProtocol::Udp, CandidateType::Host),
            (CandidateProtocol::Tcp, CandidateType::Srflx),
            (CandidateProtocol::Udp, CandidateType::Prflx),
            (CandidateProtocol::Tcp, CandidateType::Relay),
        ]
    );
    assert_eq!(s.dtls_parameters.role, DtlsRole::Server);
    // Re-encoded as integers.
    let v = json(&s.encode());
    assert_eq!(v["iceCandidates"][1]["protocol"], 2);
    assert_eq!(v["iceCandidates"][1]["type"], 2);
    assert_eq!(v["dtlsParameters"]["role"], 3);
}

#[test]
fn dtls_role_as_string() {
    for (name, role) in [
        ("auto", DtlsRole::Auto),
        ("client", DtlsRole::Client),
        ("Server", DtlsRole::Server),
    ] {
        let input = format!(r#"{{"dtlsParameters":{{"role":"{name}","fingerprints":[]}}}}"#);
        let s = Signal::decode(input.as_bytes()).unwrap();
        assert_eq!(s.dtls_parameters.role, role);
        assert_eq!(s.dtls_parameters.fingerprints, Some(vec![]));
    }
    assert!(is_invalid(Signal::decode(
        br#"{"dtlsParameters":{"role":"leader"}}"#
    )));
    assert!(is_invalid(Signal::decode(
        br#"{"dtlsParameters":{"role":4}}"#
    )));
}

#[test]
fn ignores_unknown_keys_top_level_and_nested() {
    let mut v = json(&fixture("offer.json"));
    v["encodings"] = serde_json::json!({"rid": "", "ssrc": 1});
    v["trackInfo"] = serde_json::json!({"streamId": "x"});
    v["future"] = serde_json::json!([1, {"a": null}]);
    v["iceCandidates"][0]["networkId"] = serde_json::json!(3);
    v["iceParameters"]["extra"] = serde_json::json!("x");
    v["dtlsParameters"]["fingerprints"][0]["note"] = serde_json::json!(true);
    v["sctpCapabilities"]["port"] = serde_json::json!(5000);
    v["relay"] =
        serde_json::json!({"version": 1, "features": [], "maxMessageSize": 9, "later": {}});
    let s = Signal::decode(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(
        Signal {
            relay: None,
            ..s.clone()
        },
        offer()
    );
    assert_eq!(s.relay.unwrap().max_message_size, 9);

    let mut t = json(&fixture("track-signal.json"));
    t["encodings"]["headerExtensions"] = serde_json::json!([{"uri": "x", "id": 1}]);
    t["trackInfo"]["codecParameters"]["StatsID"] = serde_json::json!("x");
    t["later"] = serde_json::json!({});
    t["relay"] = serde_json::json!({"future": 1});
    let decoded = TrackSignal::decode(&serde_json::to_vec(&t).unwrap()).unwrap();
    assert_eq!(
        TrackSignal {
            relay: None,
            ..decoded.clone()
        },
        TrackSignal::decode(&fixture("track-signal.json")).unwrap()
    );
    assert_eq!(decoded.relay, Some(TrackExtensions::default()));

    let e = Envelope::decode(br#"{"id":5,"reply":true,"event":"x","payload":null,"extra":[1]}"#)
        .unwrap();
    assert_eq!((e.id, e.reply, e.payload), (5, true, None));
}

#[test]
fn missing_optional_keys_take_zero_values() {
    let s = Signal::decode(b"{}").unwrap();
    assert_eq!(
        s,
        Signal {
            ice_candidates: vec![],
            ice_parameters: IceParameters::default(),
            dtls_parameters: DtlsParameters {
                role: DtlsRole::Unset,
                fingerprints: None
            },
            sctp_capabilities: SctpCapabilities {
                max_message_size: 0
            },
            relay: None,
        }
    );
    // Go's nil slices arrive as null.
    let s = Signal::decode(br#"{"iceCandidates":null,"dtlsParameters":{"fingerprints":null}}"#)
        .unwrap();
    assert!(s.ice_candidates.is_empty());
    assert_eq!(s.dtls_parameters.fingerprints, None);

    let s = Signal::decode(br#"{"iceCandidates":[{"protocol":1,"type":1}]}"#).unwrap();
    let c = &s.ice_candidates[0];
    assert_eq!(
        (c.priority, c.port, c.component, c.related_port),
        (0, 0, 0, 0)
    );
    assert_eq!(c.foundation, "");

    let t = TrackSignal::decode(br#"{"encodings":{},"trackInfo":{"codecParameters":{}}}"#).unwrap();
    assert_eq!(
        t,
        TrackSignal::new(0, String::new(), String::new(), CodecParameters::default())
    );

    let e = Envelope::decode(br#"{"id":1,"event":"e"}"#).unwrap();
    assert_eq!((e.reply, e.payload), (false, None));
}

#[test]
fn envelope_payload_null_missing_and_empty() {
    let null = Envelope::decode(br#"{"id":1,"reply":false,"event":"e","payload":null}"#).unwrap();
    assert_eq!(null.payload, None);
    let missing = Envelope::decode(br#"{"id":1,"reply":false,"event":"e"}"#).unwrap();
    assert_eq!(missing, null);
    let empty = Envelope::decode(br#"{"id":1,"reply":false,"event":"e","payload":""}"#).unwrap();
    assert_eq!(empty.payload, Some(Bytes::new()));
    assert_eq!(
        null.encode(),
        br#"{"id":1,"reply":false,"event":"e","payload":null}"#
    );
    assert_eq!(
        empty.encode(),
        br#"{"id":1,"reply":false,"event":"e","payload":""}"#
    );
}

#[test]
fn envelope_extreme_ids_are_exact() {
    for id in [u64::MAX, (1 << 63) + 1, (1 << 53) + 1, 0] {
        let input = format!(r#"{{"id":{id},"reply":true,"event":"e","payload":null}}"#);
        let e = Envelope::decode(input.as_bytes()).unwrap();
        assert_eq!(e.id, id);
        assert_eq!(e.encode(), input.as_bytes());
    }
    assert!(is_malformed(Envelope::decode(
        br#"{"id":18446744073709551616,"event":"e"}"#
    )));
    assert!(is_malformed(Envelope::decode(br#"{"id":1e3,"event":"e"}"#)));
}

#[test]
fn relay_announcement_round_trips() {
    let mut s = offer();
    s.relay = Some(Announcement {
        version: 1,
        features: vec!["fast-setup".into(), "track-removal".into()],
        max_message_size: 1 << 20,
        sctp_init: None,
    });
    let bytes = s.encode();
    let v = json(&bytes);
    assert_eq!(
        v["relay"],
        serde_json::json!({"version": 1, "features": ["fast-setup", "track-removal"], "maxMessageSize": 1048576})
    );
    assert_eq!(Signal::decode(&bytes).unwrap(), s);
    // The base fields are untouched, so a Go peer reads the same signal.
    let offer_bytes = fixture("offer.json");
    assert!(bytes.starts_with(&offer_bytes[..offer_bytes.len() - 1]));

    s.relay.as_mut().unwrap().sctp_init = Some(Bytes::from_static(&[0, 1, 2, 0xff]));
    let bytes = s.encode();
    assert_eq!(json(&bytes)["relay"]["sctpInit"], "AAEC/w==");
    assert_eq!(Signal::decode(&bytes).unwrap(), s);

    // Tolerant of missing parts.
    let a = Signal::decode(br#"{"relay":{"version":2}}"#)
        .unwrap()
        .relay
        .unwrap();
    assert_eq!(
        a,
        Announcement {
            version: 2,
            features: vec![],
            max_message_size: 0,
            sctp_init: None
        }
    );
    let a = Signal::decode(br#"{"relay":{}}"#).unwrap().relay.unwrap();
    assert_eq!(a.version, 0);
    // Absent relay is omitted when encoding.
    assert!(
        !String::from_utf8(offer().encode())
            .unwrap()
            .contains("relay")
    );
    assert!(is_invalid(Signal::decode(
        br#"{"relay":{"sctpInit":"!!"}}"#
    )));
    assert!(is_malformed(Signal::decode(
        br#"{"relay":{"features":[1]}}"#
    )));
}

#[test]
fn fingerprint_bytes_round_trip() {
    let fp = &offer().dtls_parameters.fingerprints.unwrap()[0];
    let bytes = fp.to_bytes().unwrap();
    assert_eq!(DtlsFingerprint::from_bytes("sha-256", &bytes), *fp);
    let upper = DtlsFingerprint {
        algorithm: fp.algorithm.clone(),
        value: fp.value.to_uppercase(),
    };
    assert_eq!(upper.to_bytes().unwrap(), bytes);
}

// ---- rejections -----------------------------------------------------------

#[test]
fn rejects_not_json() {
    let inputs: [&[u8]; 5] = [
        b"not json",
        b"",
        b"{",
        br#"{"id":1,"event":"e"} trailing"#,
        &[0xff, 0xfe],
    ];
    for input in inputs {
        assert!(is_malformed(Signal::decode(input)), "signal {input:?}");
        assert!(is_malformed(Envelope::decode(input)), "envelope {input:?}");
        assert!(is_malformed(TrackSignal::decode(input)), "track {input:?}");
    }
}

#[test]
fn rejects_non_objects() {
    let inputs: [&[u8]; 5] = [b"[]", b"[1,false,\"e\",null]", b"null", b"42", b"\"x\""];
    for input in inputs {
        assert!(is_malformed(Signal::decode(input)), "signal {input:?}");
        assert!(is_malformed(Envelope::decode(input)), "envelope {input:?}");
        assert!(is_malformed(TrackSignal::decode(input)), "track {input:?}");
    }
}

#[test]
fn rejects_unknown_candidate_type_and_protocol() {
    let mut v = json(&fixture("offer.json"));
    v["iceCandidates"][0]["type"] = serde_json::json!(9);
    let err = Signal::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("type"), "{err}");

    for (key, value) in [
        ("type", serde_json::json!(0)),
        ("type", serde_json::json!("bogus")),
        ("protocol", serde_json::json!(3)),
        ("protocol", serde_json::json!("sctp")),
    ] {
        let mut v = json(&fixture("offer.json"));
        v["iceCandidates"][0][key] = value;
        assert!(is_invalid(Signal::decode(&serde_json::to_vec(&v).unwrap())));
    }
}

#[test]
fn rejects_wrong_types() {
    let cases: [(&[&str], Value); 10] = [
        (&["iceCandidates", "0", "priority"], serde_json::json!("1")),
        (&["iceCandidates", "0", "priority"], serde_json::json!(1.5)),
        (&["iceCandidates", "0", "type"], serde_json::json!(true)),
        (&["iceCandidates", "0", "address"], serde_json::json!(127)),
        (&["iceCandidates"], serde_json::json!({})),
        (&["iceCandidates", "0"], serde_json::json!("cand")),
        (&["iceParameters", "iceLite"], serde_json::json!("false")),
        (&["dtlsParameters"], serde_json::json!([])),
        (&["dtlsParameters", "fingerprints"], serde_json::json!({})),
        (
            &["sctpCapabilities", "maxMessageSize"],
            serde_json::json!([0]),
        ),
    ];
    for (path, value) in cases {
        let mut v = json(&fixture("offer.json"));
        let mut slot = &mut v;
        for p in path {
            slot = match p.parse::<usize>() {
                Ok(i) => &mut slot[i],
                Err(_) => &mut slot[*p],
            };
        }
        *slot = value;
        let r = Signal::decode(&serde_json::to_vec(&v).unwrap());
        assert!(is_malformed(r), "{path:?}");
    }
    // In range checks.
    let mut v = json(&fixture("offer.json"));
    v["iceCandidates"][0]["port"] = serde_json::json!(65536);
    assert!(is_invalid(Signal::decode(&serde_json::to_vec(&v).unwrap())));
    let mut v = json(&fixture("offer.json"));
    v["iceCandidates"][0]["priority"] = serde_json::json!(-1);
    assert!(is_invalid(Signal::decode(&serde_json::to_vec(&v).unwrap())));

    assert!(is_malformed(Envelope::decode(br#"{"id":"1","event":"e"}"#)));
    assert!(is_malformed(Envelope::decode(
        br#"{"id":1,"event":"e","reply":1}"#
    )));
    assert!(is_malformed(Envelope::decode(
        br#"{"id":1,"event":"e","payload":[1]}"#
    )));
}

#[test]
fn rejects_bad_base64_payload() {
    for payload in [
        "!!!!",
        "aGVsbG8",
        "aGVsbG8=x",
        "aGVsbG8-",
        "aGVsbG9=",
        " aGVs",
    ] {
        let input = format!(r#"{{"id":1,"reply":false,"event":"e","payload":"{payload}"}}"#);
        let r = Envelope::decode(input.as_bytes());
        assert!(is_invalid(r), "{payload:?} accepted");
    }
}

#[test]
fn rejects_odd_hex_fingerprint() {
    for value in ["3d:c3:5", "3dc", "3d:c3:5b:a", "3d:zz", ""] {
        let fp = DtlsFingerprint {
            algorithm: "sha-256".into(),
            value: value.into(),
        };
        assert!(is_invalid(fp.to_bytes()), "{value:?} accepted");
    }
}

#[test]
fn rejects_oversize_signal_and_track_signal() {
    const SIGNAL_LIMIT: usize = 64 * 1024;
    const TRACK_LIMIT: usize = 16 * 1024;
    // Pad valid JSON with whitespace: exactly at the limit is fine.
    let mut at_limit = fixture("offer.json");
    at_limit.resize(SIGNAL_LIMIT, b' ');
    assert_eq!(Signal::decode(&at_limit).unwrap(), offer());
    at_limit.push(b' ');
    let err = Signal::decode(&at_limit).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                len: 65_537,
                limit: 65_536,
                ..
            }
        ),
        "{err}"
    );

    let mut track = fixture("track-signal.json");
    track.resize(TRACK_LIMIT, b'\n');
    assert!(TrackSignal::decode(&track).is_ok());
    track.push(b'\n');
    assert!(matches!(
        TrackSignal::decode(&track),
        Err(DecodeError::TooLarge { limit: 16_384, .. })
    ));

    // Envelopes have no internal limit.
    let big = Envelope {
        id: 1,
        reply: false,
        event: "e".into(),
        payload: Some(Bytes::from(vec![7u8; 200_000])),
    };
    assert_eq!(Envelope::decode(&big.encode()).unwrap(), big);
}

#[test]
fn track_signal_requires_encodings_and_track_info() {
    let mut v = json(&fixture("track-signal.json"));
    v.as_object_mut().unwrap().remove("encodings");
    assert!(is_malformed(TrackSignal::decode(
        &serde_json::to_vec(&v).unwrap()
    )));

    let mut v = json(&fixture("track-signal.json"));
    v.as_object_mut().unwrap().remove("trackInfo");
    assert!(is_malformed(TrackSignal::decode(
        &serde_json::to_vec(&v).unwrap()
    )));

    let mut v = json(&fixture("track-signal.json"));
    v["trackInfo"] = Value::Null;
    assert!(is_malformed(TrackSignal::decode(
        &serde_json::to_vec(&v).unwrap()
    )));

    // An offer is not a track signal.
    assert!(is_malformed(TrackSignal::decode(&fixture("offer.json"))));
}

// ---- properties -------------------------------------------------------------

fn any_protocol() -> impl Strategy<Value = CandidateProtocol> {
    prop_oneof![Just(CandidateProtocol::Udp), Just(CandidateProtocol::Tcp)]
}

fn any_type() -> impl Strategy<Value = CandidateType> {
    prop_oneof![
        Just(CandidateType::Host),
        Just(CandidateType::Srflx),
        Just(CandidateType::Prflx),
        Just(CandidateType::Relay),
    ]
}

fn any_role() -> impl Strategy<Value = DtlsRole> {
    prop_oneof![
        Just(DtlsRole::Unset),
        Just(DtlsRole::Auto),
        Just(DtlsRole::Client),
        Just(DtlsRole::Server),
    ]
}

/// Arbitrary strings, biased towards characters JSON must escape.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\"\\\\/\\x00-\\x1f\\x7f a-zé😀\u{2028}]{0,12}",
    ]
}

fn any_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn any_candidate() -> impl Strategy<Value = SignalCandidate> {
    (
        (
            any_text(),
            any::<u32>(),
            any_text(),
            any_protocol(),
            any::<u16>(),
        ),
        (
            any_type(),
            any::<u16>(),
            any_text(),
            any::<u16>(),
            any_text(),
        ),
    )
        .prop_map(
            |(
                (foundation, priority, address, protocol, port),
                (typ, component, related_address, related_port, tcp_type),
            )| SignalCandidate {
                foundation,
                priority,
                address,
                protocol,
                port,
                typ,
                component,
                related_address,
                related_port,
                tcp_type,
            },
        )
}

fn any_ice() -> impl Strategy<Value = IceParameters> {
    (any_text(), any_text(), any::<bool>()).prop_map(|(username_fragment, password, ice_lite)| {
        IceParameters {
            username_fragment,
            password,
            ice_lite,
        }
    })
}

fn any_dtls() -> impl Strategy<Value = DtlsParameters> {
    let fingerprint = (any_text(), any_text())
        .prop_map(|(algorithm, value)| DtlsFingerprint { algorithm, value });
    (
        any_role(),
        proptest::option::of(proptest::collection::vec(fingerprint, 0..3)),
    )
        .prop_map(|(role, fingerprints)| DtlsParameters { role, fingerprints })
}

fn any_announcement() -> impl Strategy<Value = Announcement> {
    (
        any::<u32>(),
        proptest::collection::vec(any_text(), 0..4),
        any::<u32>(),
        proptest::option::of(any_bytes()),
    )
        .prop_map(
            |(version, features, max_message_size, sctp_init)| Announcement {
                version,
                features,
                max_message_size,
                sctp_init,
            },
        )
}

fn any_signal() -> impl Strategy<Value = Signal> {
    (
        proptest::collection::vec(any_candidate(), 0..4),
        any_ice(),
        any_dtls(),
        any::<u32>(),
        proptest::option::of(any_announcement()),
    )
        .prop_map(
            |(ice_candidates, ice_parameters, dtls_parameters, max_message_size, relay)| Signal {
                ice_candidates,
                ice_parameters,
                dtls_parameters,
                sctp_capabilities: SctpCapabilities { max_message_size },
                relay,
            },
        )
}

fn any_envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<u64>(),
        any::<bool>(),
        any_text(),
        proptest::option::of(any_bytes()),
    )
        .prop_map(|(id, reply, event, payload)| Envelope {
            id,
            reply,
            event,
            payload,
        })
}

fn any_track_signal() -> impl Strategy<Value = TrackSignal> {
    let feedback =
        (any_text(), any_text()).prop_map(|(typ, parameter)| RtcpFeedback { typ, parameter });
    let codec = (
        (any_text(), any::<u32>(), any::<u16>()),
        (
            any_text(),
            proptest::collection::vec(feedback, 0..4),
            any::<u8>(),
        ),
    )
        .prop_map(
            |((mime_type, clock_rate, channels), (sdp_fmtp_line, rtcp_feedback, payload_type))| {
                CodecParameters {
                    mime_type,
                    clock_rate,
                    channels,
                    sdp_fmtp_line,
                    rtcp_feedback,
                    payload_type,
                }
            },
        );
    let encodings = (any_text(), any::<u32>(), any::<u8>(), any::<u32>()).prop_map(
        |(rid, ssrc, payload_type, rtx)| Encodings {
            rid,
            ssrc,
            payload_type,
            rtx: RtxEncoding { ssrc: rtx },
        },
    );
    let extensions = proptest::option::of(
        (
            proptest::collection::vec(
                (any_text(), any::<u8>()).prop_map(|(uri, id)| HeaderExtensionMap { uri, id }),
                0..4,
            ),
            proptest::collection::vec(
                (any_text(), any::<u32>(), any::<u32>())
                    .prop_map(|(rid, ssrc, rtx)| LayerEncoding { rid, ssrc, rtx }),
                0..4,
            ),
        )
            .prop_map(|(header_extensions, layers)| TrackExtensions {
                header_extensions,
                layers,
            }),
    );
    (
        encodings,
        any_ice(),
        any_dtls(),
        any_text(),
        any_text(),
        codec,
        extensions,
    )
        .prop_map(
            |(
                encodings,
                ice_parameters,
                dtls_parameters,
                stream_id,
                track_id,
                codec_parameters,
                relay,
            )| {
                TrackSignal {
                    encodings,
                    ice_parameters,
                    dtls_parameters,
                    track_info: TrackInfo {
                        stream_id,
                        track_id,
                        codec_parameters,
                    },
                    relay,
                }
            },
        )
}

/// The extension messages' exact bytes, as docs/protocol.md gives them
/// (B.2 and B.3), inside the envelope that carries them.
#[test]
fn extension_messages_exact_bytes() {
    let remove = TrackRemove { ssrc: 2596996162 };
    assert_eq!(remove.encode(), br#"{"ssrc":2596996162}"#);
    let report = OriginReport {
        ssrc: 2596996162,
        ntp: 0xe8a3_1a2b_8000_0000,
        rtp: 3_000_000_000,
    };
    assert_eq!(
        report.encode(),
        br#"{"ssrc":2596996162,"ntp":16763271012136517632,"rtp":3000000000}"#
    );
    let env = Envelope {
        id: 7,
        reply: false,
        event: TRACK_REMOVE_EVENT.into(),
        payload: Some(Bytes::from(remove.encode())),
    };
    assert_eq!(
        env.encode(),
        br#"{"id":7,"reply":false,"event":"relay.track.remove","payload":"eyJzc3JjIjoyNTk2OTk2MTYyfQ=="}"#
    );
    assert_eq!(
        Extension::decode(&env.event, env.payload.as_deref()).map(|r| r.unwrap()),
        Some(Extension::TrackRemove(remove))
    );
    assert_eq!(
        Extension::decode(SENDER_REPORT_EVENT, Some(&report.encode())).map(|r| r.unwrap()),
        Some(Extension::OriginReport(report))
    );
}

#[test]
fn extension_messages_refuse_what_they_cannot_use() {
    for bad in [
        &br#"{"ssrc":0}"#[..],
        br#"{"ssrc":-1}"#,
        br#"{"ssrc":"1"}"#,
        br#"{}"#,
        br#"[1]"#,
        br#"not json"#,
    ] {
        assert!(
            TrackRemove::decode(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(is_malformed(OriginReport::decode(br#"{"ssrc":1,"rtp":2}"#)));
    assert!(is_invalid(OriginReport::decode(
        br#"{"ssrc":1,"ntp":2,"rtp":4294967296}"#
    )));
    assert!(matches!(
        Extension::decode(TRACK_REMOVE_EVENT, None),
        Some(Err(_))
    ));
    assert!(Extension::decode("sfu.message", Some(b"{}")).is_none());
}

/// Valid inputs with one byte changed, to reach deeper than random bytes do.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    (0..len, any::<u8>(), 0..=len).prop_map(move |(i, b, cut)| {
        let mut v = base.clone();
        v[i] = b;
        v.truncate(cut.max(i + 1));
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_signal_round_trips(s in any_signal()) {
        let bytes = s.encode();
        prop_assert!(serde_json::from_slice::<Value>(&bytes).is_ok(), "encode gives valid JSON");
        prop_assert_eq!(Signal::decode(&bytes).unwrap(), s);
    }

    #[test]
    fn prop_envelope_round_trips(e in any_envelope()) {
        let bytes = e.encode();
        prop_assert_eq!(Envelope::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn prop_envelope_encoded_len_is_exact(e in any_envelope()) {
        prop_assert_eq!(e.encoded_len(), e.encode().len());
    }

    #[test]
    fn prop_envelope_event_escapes_like_serde_json(e in any_envelope()) {
        let v: Value = serde_json::from_slice(&e.encode()).unwrap();
        prop_assert_eq!(v["event"].as_str(), Some(e.event.as_str()));
        prop_assert_eq!(v["id"].as_u64(), Some(e.id));
    }

    #[test]
    fn prop_track_signal_round_trips(t in any_track_signal()) {
        prop_assert_eq!(TrackSignal::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn prop_track_remove_round_trips(ssrc in 1u32..) {
        let m = TrackRemove { ssrc };
        prop_assert_eq!(TrackRemove::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn prop_origin_report_round_trips(ssrc in 1u32.., ntp in any::<u64>(), rtp in any::<u32>()) {
        let m = OriginReport { ssrc, ntp, rtp };
        prop_assert_eq!(OriginReport::decode(&m.encode()).unwrap(), m);
        let v: Value = serde_json::from_slice(&m.encode()).unwrap();
        prop_assert_eq!(v["ntp"].as_u64(), Some(ntp));
    }

    #[test]
    fn prop_fingerprint_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
        let fp = DtlsFingerprint::from_bytes("sha-256", &bytes);
        prop_assert_eq!(fp.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn prop_decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Signal::decode(&bytes);
        let _ = Envelope::decode(&bytes);
        let _ = TrackSignal::decode(&bytes);
        let _ = TrackRemove::decode(&bytes);
        let _ = OriginReport::decode(&bytes);
        let _ = DtlsFingerprint { algorithm: String::new(), value: String::from_utf8_lossy(&bytes).into_owned() }.to_bytes();
    }

    #[test]
    fn prop_decoders_never_panic_on_mutated_fixtures(
        offer in mutated(fixture("offer.json")),
        env in mutated(envelope_lines().swap_remove(7)),
        track in mutated(fixture("track-signal.json")),
    ) {
        let _ = Signal::decode(&offer);
        let _ = Envelope::decode(&env);
        let _ = TrackSignal::decode(&track);
    }
}
