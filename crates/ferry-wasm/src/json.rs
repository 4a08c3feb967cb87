//! JSON text for the companion's calls and answers and for `localStorage`. In the browser it is
//! read and written by the browser's own `JSON` through serde-wasm-bindgen, which the package
//! needs anyway for options and events: a JSON parser of our own would add a second
//! deserializer for every type to the wasm. Natively (the unit tests) serde_json does it, in the
//! same shape.

use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen::JsCast as _;

/// `value` as JSON text; none if it cannot be written (it always can: plain data).
#[cfg(target_arch = "wasm32")]
pub fn to_string(value: &impl Serialize) -> Option<String> {
    let value = value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .ok()?;
    js_sys::JSON::stringify(&value).ok()?.as_string()
}

/// `text` read as a `T`: an error says why it is not one.
#[cfg(target_arch = "wasm32")]
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let value = js_sys::JSON::parse(text).map_err(|err| {
        err.dyn_ref::<js_sys::Error>()
            .map(|err| String::from(err.message()))
            .unwrap_or_else(|| "not JSON".into())
    })?;
    serde_wasm_bindgen::from_value(value).map_err(|err| err.to_string())
}

#[cfg(not(target_arch = "wasm32"))]
pub fn to_string(value: &impl Serialize) -> Option<String> {
    serde_json::to_string(value).ok()
}

#[cfg(not(target_arch = "wasm32"))]
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|err| err.to_string())
}
