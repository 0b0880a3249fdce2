//! The keys file of `exposure-client upload`: one case's diagnosis keys as JSON, in any of the
//! three schemes (DESIGN.md section 2), turned into an `UploadDiagnosisKeysRequest`.
//!
//! The format is documented with a complete example in `client/README.md` (the same file is
//! `client/examples/keys.json`). Field names follow the proto, so a server error such as
//! `keys[2].gaen.rolling_period` names the same place in the file.
//!
//! Reading happens in two steps so that every mistake is named: serde_json parses the text
//! (a syntax error carries its line and column), then [`Object`] walks the value and names the
//! field of every semantic error (`keys[2].gaen.key_data: not hex`). Unknown fields are refused,
//! so a typo never silently drops a value. `days_since_onset_of_symptoms` (GAEN's name; the
//! shorter `days_since_onset` is read as the same field) travels with a GAEN key into the
//! server's export files (DESIGN §11). Range rules stay with the server, which names the field it refuses; the
//! file checks only what the request cannot carry otherwise (types, hex). Key material is never
//! echoed in an error.

use exposure_proto::v1::{
    BluezoneKey, DiagnosisKey, GaenKey, ReportType, StaticIdentifier, UploadDiagnosisKeysRequest,
    diagnosis_key,
};
use serde_json::{Map, Value};

/// Why a keys file cannot be uploaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysFileError {
    /// The text is not JSON.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the mistake.
        line: usize,
        /// 1-based column of the mistake.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The JSON does not describe an upload.
    #[error("{field}: {message}")]
    Field {
        /// Path of the field, such as `keys[2].gaen.key_data`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One case's upload as read from a keys file.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysFile {
    /// Region of the case.
    pub region: String,
    /// Idempotency key; `None` lets the caller draw a random one.
    pub upload_id: Option<String>,
    /// What the keys report; `None` means a confirmed test.
    pub report_type: Option<ReportType>,
    /// The keys, in file order.
    pub keys: Vec<DiagnosisKey>,
}

/// Returns the report type named `name` in a keys file or on the command line.
pub fn report_type_from_name(name: &str) -> Option<ReportType> {
    match name {
        "confirmed-test" => Some(ReportType::ConfirmedTest),
        "clinical" => Some(ReportType::ConfirmedClinicalDiagnosis),
        "self-report" => Some(ReportType::SelfReport),
        "revoked" => Some(ReportType::Revoked),
        _ => None,
    }
}

impl KeysFile {
    /// Reads a keys file's text.
    pub fn parse(text: &str) -> Result<Self, KeysFileError> {
        let value: Value = serde_json::from_str(text).map_err(|error| KeysFileError::Syntax {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        })?;
        let mut file = Object::new(&value, String::new())?;
        let region = file.string("region")?;
        let upload_id = file.optional_string("upload_id")?;
        let report_type = match file.optional_string("report_type")? {
            Some(name) => Some(report_type_from_name(&name).ok_or_else(|| {
                field_error(
                    "report_type",
                    "expected confirmed-test, clinical, self-report or revoked",
                )
            })?),
            None => None,
        };
        let keys = match file.take("keys") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| read_key(item, format!("keys[{index}]")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(field_error("keys", "expected an array of keys")),
            None => return Err(field_error("keys", "missing")),
        };
        file.finish()?;
        Ok(KeysFile {
            region,
            upload_id,
            report_type,
            keys,
        })
    }

    /// Returns the request that uploads the file's keys under `upload_id` (used when the file
    /// names none).
    pub fn to_request(&self, upload_id: String) -> UploadDiagnosisKeysRequest {
        UploadDiagnosisKeysRequest {
            region: self.region.clone(),
            upload_id: self.upload_id.clone().unwrap_or(upload_id),
            keys: self.keys.clone(),
            report_type: self.report_type.unwrap_or(ReportType::ConfirmedTest) as i32,
            padding: Vec::new(),
        }
    }
}

/// Reads `keys[i]`: an object with exactly one of `gaen`, `bluezone`, `static_id`.
fn read_key(value: &Value, path: String) -> Result<DiagnosisKey, KeysFileError> {
    let mut key = Object::new(value, path)?;
    let schemes = ["gaen", "bluezone", "static_id"];
    let present: Vec<&str> = schemes
        .into_iter()
        .filter(|scheme| key.has(scheme) || (*scheme == "static_id" && key.has("static")))
        .collect();
    let [scheme] = present[..] else {
        return Err(key.error("", "expected exactly one of gaen, bluezone, static_id"));
    };
    let (inner, transmission_risk_level) = match scheme {
        "gaen" => {
            let mut gaen = key.object("gaen")?;
            let key_data = gaen.hex("key_data")?;
            let rolling_start_interval_number = gaen.number_u32("rolling_start_interval_number")?;
            let rolling_period = gaen.optional_u32("rolling_period")?.unwrap_or(144);
            let risk = gaen.optional_u32("transmission_risk_level")?.unwrap_or(0);
            let onset = match gaen.has("days_since_onset") {
                true if gaen.has("days_since_onset_of_symptoms") => {
                    return Err(gaen.error(
                        "days_since_onset",
                        "give days_since_onset_of_symptoms only (days_since_onset is its short name)",
                    ));
                }
                true => gaen.optional_i32("days_since_onset")?,
                false => gaen.optional_i32("days_since_onset_of_symptoms")?,
            };
            gaen.finish()?;
            let gaen = GaenKey {
                key_data,
                rolling_start_interval_number,
                rolling_period,
                days_since_onset_of_symptoms: onset,
            };
            (diagnosis_key::Key::Gaen(gaen), risk)
        }
        "bluezone" => {
            let mut bluezone = key.object("bluezone")?;
            let key = BluezoneKey {
                daily_key: bluezone.hex("daily_key")?,
                day_number: bluezone.number_u32("day_number")?,
                sub_keys_per_day: bluezone.optional_u32("sub_keys_per_day")?.unwrap_or(0),
                contagious_from: bluezone.number_u64("contagious_from")?,
                contagious_until: bluezone.number_u64("contagious_until")?,
            };
            bluezone.finish()?;
            (diagnosis_key::Key::Bluezone(key), 0)
        }
        _ => {
            let name = if key.has("static_id") {
                "static_id"
            } else {
                "static"
            };
            let mut fixed = key.object(name)?;
            let identifier = StaticIdentifier {
                identifier: fixed.hex("identifier")?,
                contagious_from: fixed.number_u64("contagious_from")?,
                contagious_until: fixed.number_u64("contagious_until")?,
            };
            fixed.finish()?;
            (diagnosis_key::Key::StaticId(identifier), 0)
        }
    };
    key.finish()?;
    Ok(DiagnosisKey {
        key: Some(inner),
        transmission_risk_level,
    })
}

/// A JSON object being read field by field, remembering its path and the fields not yet read.
struct Object {
    path: String,
    fields: Map<String, Value>,
}

impl Object {
    fn new(value: &Value, path: String) -> Result<Self, KeysFileError> {
        match value {
            Value::Object(fields) => Ok(Object {
                path,
                fields: fields.clone(),
            }),
            _ => Err(KeysFileError::Field {
                field: if path.is_empty() {
                    "(top level)".to_owned()
                } else {
                    path
                },
                message: "expected an object".to_owned(),
            }),
        }
    }

    fn field_path(&self, name: &str) -> String {
        match (self.path.is_empty(), name.is_empty()) {
            (true, _) => name.to_owned(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{name}", self.path),
        }
    }

    fn error(&self, name: &str, message: &str) -> KeysFileError {
        KeysFileError::Field {
            field: self.field_path(name),
            message: message.to_owned(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.fields.remove(name)
    }

    fn required(&mut self, name: &str) -> Result<Value, KeysFileError> {
        self.take(name).ok_or_else(|| self.error(name, "missing"))
    }

    fn string(&mut self, name: &str) -> Result<String, KeysFileError> {
        match self.required(name)? {
            Value::String(text) => Ok(text),
            _ => Err(self.error(name, "expected a string")),
        }
    }

    fn optional_string(&mut self, name: &str) -> Result<Option<String>, KeysFileError> {
        if !self.has(name) {
            return Ok(None);
        }
        self.string(name).map(Some)
    }

    fn object(&mut self, name: &str) -> Result<Object, KeysFileError> {
        let value = self.required(name)?;
        Object::new(&value, self.field_path(name))
    }

    fn hex(&mut self, name: &str) -> Result<Vec<u8>, KeysFileError> {
        match self.required(name)? {
            // The value is key material: the message says what is wrong, never what it was.
            Value::String(text) => hex::decode(text.trim())
                .map_err(|_| self.error(name, "not hex (expected pairs of 0-9, a-f)")),
            _ => Err(self.error(name, "expected a hex string")),
        }
    }

    fn number_u64(&mut self, name: &str) -> Result<u64, KeysFileError> {
        let value = self.required(name)?;
        value
            .as_u64()
            .ok_or_else(|| self.error(name, "expected a whole number of at least 0"))
    }

    fn number_u32(&mut self, name: &str) -> Result<u32, KeysFileError> {
        let number = self.number_u64(name)?;
        u32::try_from(number).map_err(|_| self.error(name, "expected a number below 2^32"))
    }

    fn optional_u32(&mut self, name: &str) -> Result<Option<u32>, KeysFileError> {
        if !self.has(name) {
            return Ok(None);
        }
        self.number_u32(name).map(Some)
    }

    fn optional_i32(&mut self, name: &str) -> Result<Option<i32>, KeysFileError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        value
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .map(Some)
            .ok_or_else(|| self.error(name, "expected a whole number (may be negative)"))
    }

    /// Refuses the fields nobody read: a typo must not silently drop a value.
    fn finish(self) -> Result<(), KeysFileError> {
        match self.fields.keys().next() {
            Some(unknown) => Err(self.error(unknown, "unknown field")),
            None => Ok(()),
        }
    }
}

fn field_error(field: &str, message: &str) -> KeysFileError {
    KeysFileError::Field {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// Drops serde_json's " at line L column C" suffix, which the error repeats in its own fields.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
#[path = "keys_file_tests.rs"]
mod tests;
