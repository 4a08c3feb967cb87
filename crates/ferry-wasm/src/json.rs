//! Values between JavaScript and `ferry_core::json`, which reads and writes every JSON text of
//! the package (the companion's calls and answers, `localStorage`): the options and maps
//! JavaScript passes are read into a [`Json`] and then into their type; the events and values
//! given back are built from one. No serde in the wasm: a derived reader per type and serde's
//! error messages cost more than these few lines.

use ferry_core::json::{FromJson, Json, ToJson};
use wasm_bindgen::{JsCast as _, JsValue, UnwrapThrowExt as _};

/// Deeper is refused: an object that holds itself would never end.
const MAX_DEPTH: usize = 32;

/// JSON text read by the browser's `JSON.parse`: the wasm carries no JSON parser of its own.
#[cfg(target_family = "wasm")]
pub fn parse(text: &str) -> Result<Json, String> {
    json_of(&js_sys::JSON::parse(text).map_err(crate::describe)?, 0)
}

/// Natively, in this crate's unit tests, ferry-core's parser stands in for the browser's.
#[cfg(not(target_family = "wasm"))]
pub fn parse(text: &str) -> Result<Json, String> {
    Json::parse(text)
}

/// JSON text read as a `T`: the error says whether it was no JSON or not this.
pub fn read<T: FromJson>(text: &str) -> Result<T, String> {
    T::from_json(&parse(text)?)
}

/// A failed answer of the companion or the store, its JSON read by the browser.
pub fn failure(status: u16, body: &str, retry_after: Option<String>) -> ferry_core::Failure {
    ferry_core::answer::failure_read_by(|text| parse(text).ok(), status, body, retry_after)
}

/// `value` read as a `T`. `undefined` and functions count as absent, as `JSON.stringify` leaves
/// them out; a `Map` reads as an object of its entries; a number that is not finite, a symbol, a
/// BigInt or an object of another class (a `Set`, a `Date`) is an error.
pub fn from_js<T: FromJson>(value: &JsValue) -> Result<T, String> {
    T::from_json(&json_of(value, 0)?)
}

/// The fields `names` of the object `value`, each as `Reflect.get` reads it (from a getter or
/// the prototype too), read as a `T`: its other fields are not looked at, whatever they hold.
pub fn from_js_fields<T: FromJson>(value: &JsValue, names: &[&str]) -> Result<T, String> {
    if !value.is_object() {
        return Err("expected an object".into());
    }
    let mut fields = Vec::with_capacity(names.len());
    for &name in names {
        let field = js_sys::Reflect::get(value, &name.into())
            .map_err(|_| format!("`{name}` could not be read"))?;
        let field = json_of(&field, 1).map_err(|err| format!("`{name}`: {err}"))?;
        fields.push((name.to_owned(), field));
    }
    T::from_json(&Json::Object(fields))
}

fn json_of(value: &JsValue, depth: usize) -> Result<Json, String> {
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
    // Only arrays and objects nest, so only they count against the depth.
    if depth > MAX_DEPTH {
        return Err("nested too deep (does an object hold itself?)".into());
    }
    if js_sys::Array::is_array(value) {
        let array: &js_sys::Array = value.unchecked_ref();
        return array
            .iter()
            .map(|item| json_of(&item, depth + 1))
            .collect::<Result<_, _>>()
            .map(Json::Array);
    }
    let entries: Vec<(JsValue, JsValue)> = if let Some(map) = value.dyn_ref::<js_sys::Map>() {
        let mut entries = Vec::new();
        map.for_each(&mut |value, key| entries.push((key, value)));
        entries
    } else if is_plain_object(value) {
        js_sys::Object::entries(value.unchecked_ref())
            .iter()
            .map(|entry| {
                let entry: js_sys::Array = entry.unchecked_into();
                (entry.get(0), entry.get(1))
            })
            .collect()
    } else if value.is_object() {
        return Err("expected a plain object, an array or a Map".into());
    } else {
        return Err("expected a plain value (not a symbol or a BigInt)".into());
    };
    let mut fields = Vec::with_capacity(entries.len());
    for (name, field) in entries {
        let name = name.as_string().ok_or("names must be strings")?;
        let field = json_of(&field, depth + 1).map_err(|err| format!("`{name}`: {err}"))?;
        fields.push((name, field));
    }
    Ok(Json::Object(fields))
}

/// An object literal's: its prototype is `Object.prototype`, or none.
fn is_plain_object(value: &JsValue) -> bool {
    if !value.is_object() {
        return false;
    }
    let prototype = js_sys::Object::get_prototype_of(value);
    prototype.is_null()
        || js_sys::Object::is(
            &prototype,
            &js_sys::Object::get_prototype_of(&js_sys::Object::new()),
        )
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
                    .expect_throw("set on a plain object");
            }
            object.into()
        }
    }
}
