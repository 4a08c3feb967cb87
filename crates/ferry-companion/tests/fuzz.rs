//! Bounded fuzzing (proptest, as cargo fuzz needs a nightly toolchain): token decoding and the
//! parsing of requests never panic, never accept what was not signed, never answer 5xx.

mod common;

use ferry_companion::token::{Claims, TokenKey};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

fn claims() -> Claims {
    Claims {
        checksum: None,
        upload_id: Some("u".into()),
        key: "uploads/anonymous/x/a.bin".into(),
        size: 11,
        part_size: 5,
        owner: "anonymous".into(),
        expires_at: u64::MAX,
        metadata: Default::default(),
        content_type: String::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_are_never_accepted_as_tokens(token in ".{0,300}") {
        prop_assert!(TokenKey::new(b"secret").verify(&token, 0).is_err());
    }

    #[test]
    fn any_change_to_a_token_is_refused(at in 0usize..200, byte in any::<u8>()) {
        let key = TokenKey::new(b"secret");
        let token = key.sign(&claims());
        let mut bytes = token.clone().into_bytes();
        let at = at % bytes.len();
        bytes[at] = byte;
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        if changed != token {
            prop_assert!(key.verify(&changed, 0).is_err(), "{changed}");
        }
    }
}

#[test]
fn request_bodies_never_make_the_companion_fail() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let companion = runtime.block_on(common::companion(&["--max-file-size", "1000000000"]));
    let created = runtime.block_on(companion.created("fuzz.bin", 11 * common::MIB));
    let sign_url = companion.url(&format!(
        "/api/uploads/{}/sign",
        created.upload_id.clone().unwrap()
    ));
    let create_url = companion.url("/api/uploads");
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 96,
        ..RunnerConfig::default()
    });
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(|bytes| bytes),
        (".{0,80}", any::<u64>(), ".{0,40}").prop_map(|(name, size, content_type)| {
            serde_json::to_vec(
                &serde_json::json!({"name": name, "size": size, "type": content_type}),
            )
            .unwrap()
        }),
        (proptest::collection::vec(any::<u32>(), 0..20), ".{0,40}").prop_map(|(parts, token)| {
            serde_json::to_vec(&serde_json::json!({"token": token, "parts": parts})).unwrap()
        }),
    ];
    runner
        .run(&(bodies, any::<bool>()), |(body, to_sign)| {
            let url = if to_sign { &sign_url } else { &create_url };
            let response = runtime.block_on(
                companion
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send(),
            );
            let status = response.unwrap().status().as_u16();
            prop_assert!(
                [200, 400, 403, 413, 415, 422].contains(&status),
                "status {status}"
            );
            Ok(())
        })
        .unwrap();
}
