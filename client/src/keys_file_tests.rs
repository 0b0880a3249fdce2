//! Tests of the keys file: the committed example reads into the request it documents, and each
//! kind of mistake is reported with its line and column or its field path.

use super::*;

const EXAMPLE: &str = include_str!("../examples/keys.json");

fn field_of(text: &str) -> (String, String) {
    match KeysFile::parse(text) {
        Err(KeysFileError::Field { field, message }) => (field, message),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn the_example_file_reads_into_all_three_schemes() {
    let file = KeysFile::parse(EXAMPLE).expect("the example parses");
    assert_eq!(file.region, "VN-TB");
    assert_eq!(file.upload_id.as_deref(), Some("case-2026-0001"));
    assert_eq!(file.report_type, Some(ReportType::ConfirmedTest));
    assert_eq!(file.keys.len(), 3);
    let Some(diagnosis_key::Key::Gaen(gaen)) = &file.keys[0].key else {
        panic!("the first key is GAEN")
    };
    assert_eq!(
        gaen.key_data,
        hex::decode("00112233445566778899aabbccddeeff").expect("hex")
    );
    assert_eq!(gaen.rolling_start_interval_number, 2_945_808);
    assert_eq!(gaen.rolling_period, 144);
    assert_eq!(gaen.days_since_onset_of_symptoms, Some(2));
    assert_eq!(file.keys[0].transmission_risk_level, 4);
    let Some(diagnosis_key::Key::Bluezone(bluezone)) = &file.keys[1].key else {
        panic!("the second key is Bluezone")
    };
    assert_eq!(bluezone.daily_key.len(), 32);
    assert_eq!(bluezone.day_number, 20_457);
    assert_eq!(bluezone.sub_keys_per_day, 96);
    let Some(diagnosis_key::Key::StaticId(fixed)) = &file.keys[2].key else {
        panic!("the third key is static")
    };
    assert_eq!(fixed.identifier.len(), 6);
    assert!(fixed.contagious_from < fixed.contagious_until);
    let request = file.to_request("ignored".to_owned());
    assert_eq!(request.upload_id, "case-2026-0001");
    assert_eq!(request.report_type, ReportType::ConfirmedTest as i32);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let file = KeysFile::parse(
        r#"{"region":"VN-HN","keys":[{"gaen":{"key_data":"00000000000000000000000000000001","rolling_start_interval_number":1}},{"static":{"identifier":"01","contagious_from":1,"contagious_until":2}}]}"#,
    )
    .expect("parses");
    let request = file.to_request("drawn".to_owned());
    assert_eq!(request.upload_id, "drawn");
    assert_eq!(request.report_type, ReportType::ConfirmedTest as i32);
    let Some(diagnosis_key::Key::Gaen(gaen)) = &request.keys[0].key else {
        panic!("GAEN")
    };
    assert_eq!(gaen.rolling_period, 144);
    assert_eq!(gaen.days_since_onset_of_symptoms, None);
    assert!(matches!(
        request.keys[1].key,
        Some(diagnosis_key::Key::StaticId(_))
    ));
}

#[test]
fn a_syntax_error_has_its_line_and_column() {
    let broken = "{\n  \"region\": \"VN-TB\",\n  \"keys\": [\n    {\"gaen\": {\"key_data\": \"00\",}}\n  ]\n}\n";
    match KeysFile::parse(broken) {
        Err(KeysFileError::Syntax {
            line,
            column,
            message,
        }) => {
            assert_eq!(line, 4);
            assert!(column > 20, "{column}");
            assert!(!message.contains(" at line "), "{message}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn semantic_errors_name_the_field() {
    let bad_hex = EXAMPLE.replace("a4c138f06b21", "not-hex");
    assert_eq!(field_of(&bad_hex).0, "keys[2].static_id.identifier");
    let bad_key = EXAMPLE.replace("00112233445566778899aabbccddeeff", "zz");
    let (field, message) = field_of(&bad_key);
    assert_eq!(field, "keys[0].gaen.key_data");
    assert!(
        !message.contains("zz"),
        "key material is never echoed: {message}"
    );
    let string_number = EXAMPLE.replace("\"day_number\": 20457", "\"day_number\": \"20457\"");
    assert_eq!(field_of(&string_number).0, "keys[1].bluezone.day_number");
    let negative = EXAMPLE.replace("\"rolling_period\": 144", "\"rolling_period\": -1");
    assert_eq!(field_of(&negative).0, "keys[0].gaen.rolling_period");
    let typo = EXAMPLE.replace("\"rolling_period\"", "\"rolling_periods\"");
    assert_eq!(
        field_of(&typo),
        (
            "keys[0].gaen.rolling_periods".to_owned(),
            "unknown field".to_owned()
        )
    );
    let long_name = EXAMPLE.replace(
        "\"days_since_onset\": 2",
        "\"days_since_onset_of_symptoms\": -3",
    );
    let Some(diagnosis_key::Key::Gaen(gaen)) =
        &KeysFile::parse(&long_name).expect("parses").keys[0].key
    else {
        panic!("GAEN")
    };
    assert_eq!(gaen.days_since_onset_of_symptoms, Some(-3));
    let both = EXAMPLE.replace(
        "\"days_since_onset\": 2",
        "\"days_since_onset\": 2, \"days_since_onset_of_symptoms\": 2",
    );
    assert_eq!(field_of(&both).0, "keys[0].gaen.days_since_onset");
    let fraction = EXAMPLE.replace("\"days_since_onset\": 2", "\"days_since_onset\": 1.5");
    assert_eq!(field_of(&fraction).0, "keys[0].gaen.days_since_onset");
    let missing = EXAMPLE.replace("\"contagious_until\": 1767528000", "\"x\": 1");
    assert_eq!(field_of(&missing).0, "keys[1].bluezone.contagious_until");
    let two_schemes = r#"{"region":"VN-TB","keys":[{"gaen":{},"bluezone":{}}]}"#;
    assert_eq!(field_of(two_schemes).0, "keys[0]");
    let report = EXAMPLE.replace("confirmed-test", "positive");
    assert_eq!(field_of(&report).0, "report_type");
    assert_eq!(field_of(r#"{"keys":[]}"#).0, "region");
    assert_eq!(field_of("[]").0, "(top level)");
}
