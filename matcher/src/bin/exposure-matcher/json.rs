//! A minimal JSON writer for the CLI's machine-readable reports, so that the matcher crate, which
//! a phone could embed, stays free of a serialization dependency.

/// A JSON value, written with fields in the order given.
pub enum Json {
    /// A finite float (a non-finite one is written as `null`).
    Number(f64),
    /// An unsigned integer, written exactly.
    Integer(u64),
    /// `true` or `false`.
    Bool(bool),
    /// A fixed ASCII string without quotes or backslashes.
    Text(&'static str),
    /// `null`.
    Null,
    /// An object whose fields keep their order.
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    /// Returns `into(value)`, or `null` for `None`.
    pub fn optional<T>(value: Option<T>, into: impl FnOnce(T) -> Json) -> Json {
        value.map_or(Json::Null, into)
    }

    /// Appends the value, objects indented by two spaces per level.
    pub fn write(&self, out: &mut String, indent: usize) {
        match self {
            // JSON has no NaN or infinity; the report never produces them, null keeps it valid.
            Json::Number(number) if !number.is_finite() => out.push_str("null"),
            Json::Number(number) => out.push_str(&number.to_string()),
            Json::Integer(integer) => out.push_str(&integer.to_string()),
            Json::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
            // Only fixed ASCII names without quotes or backslashes are written as text.
            Json::Text(text) => out.push_str(&format!("\"{text}\"")),
            Json::Null => out.push_str("null"),
            Json::Object(fields) => {
                out.push('{');
                for (index, (name, value)) in fields.iter().enumerate() {
                    out.push_str(if index == 0 { "\n" } else { ",\n" });
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(&format!("\"{name}\": "));
                    value.write(out, indent + 2);
                }
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
        }
    }
}
