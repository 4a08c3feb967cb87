//! Values between JavaScript and `ferry_core::json`, which reads and writes every JSON text of
//! the package (the companion's calls and answers, `localStorage`): the options and maps
//! JavaScript passes are read into a [`Json`] and then into their type; the events and values
//! given back are built from one. No serde in the wasm: a derived reader per type and serde's
//! error messages cost more than these few lines.

use ferry_core::json::{FromJson, Json, ToJson};
use wasm_bindgen::{JsCast as _, JsValue};

/// Deeper is refused: an object that holds itself would never end.
const MAX_DEPTH: usize = 32;

/// `value` read as a `T`. `undefined` and functions count as absent, as `JSON.stringify` leaves
/// them out; a number that is not finite, a symbol or a BigInt is an error.
pub fn from_js<T: FromJson>(value: &JsValue) -> Result<T, String> {
    T::from_json(&json_of(value, 0)?)
}

fn json_of(value: &JsValue, depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deep (does an object hold itself?)".into());
    }
    if value.is_null() || value.is_undefined() || value.is_function() {
        return Ok(Json::Null);
    }
    if let Some(flag) = value.as_bool() {
        return Ok(Json::Bool(flag));
    }
    if let Some(number) = value.as_f64() {
        return match number.is_finite() {
            true => Ok(Json::Number(number)),
            false => Err("expected a finite number".into()),
        };
    }
    if let Some(text) = value.as_string() {
        return Ok(Json::String(text));
    }
    if js_sys::Array::is_array(value) {
        let array: &js_sys::Array = value.unchecked_ref();
        return array
            .iter()
            .map(|item| json_of(&item, depth + 1))
            .collect::<Result<_, _>>()
            .map(Json::Array);
    }
    if value.is_object() {
        let mut fields = Vec::new();
        for entry in js_sys::Object::entries(value.unchecked_ref()).iter() {
            let entry: js_sys::Array = entry.unchecked_into();
            let name = entry.get(0).as_string().unwrap_or_default();
            let field =
                json_of(&entry.get(1), depth + 1).map_err(|err| format!("`{name}`: {err}"))?;
            fields.push((name, field));
        }
        return Ok(Json::Object(fields));
    }
    Err("expected a plain value (not a symbol or a BigInt)".into())
}

/// `value` as a plain JavaScript value: objects, arrays, strings, numbers, booleans and `null`.
pub fn to_js(value: &impl ToJson) -> JsValue {
    js_of(&value.to_json())
}

fn js_of(json: &Json) -> JsValue {
    match json {
        Json::Null => JsValue::NULL,
        Json::Bool(flag) => JsValue::from_bool(*flag),
        Json::Number(number) => JsValue::from_f64(*number),
        Json::String(text) => JsValue::from_str(text),
        Json::Array(items) => items.iter().map(js_of).collect::<js_sys::Array>().into(),
        Json::Object(fields) => {
            let object = js_sys::Object::new();
            for (name, value) in fields {
                js_sys::Reflect::set(&object, &name.into(), &js_of(value))
                    .expect("set on a plain object");
            }
            object.into()
        }
    }
}
