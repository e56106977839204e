//! Arguments from JavaScript, checked before anything is consumed.
//!
//! wasm-bindgen borrows `&mut self` and every `&mut Rng` before a method's body runs, and gives
//! the borrows back only when the body returns. A JavaScript exception thrown through the body
//! (an `Array.from(undefined)`, a getter of a typed array called on something else) or a trap
//! (this build aborts on panic and on allocation failure) leaves them taken: every later call on
//! those objects then fails with "recursive use of an object". So the bodies read their
//! arguments only through the checks below, which never throw and never panic: they return a
//! `TypeError` (wrong type) or a `ConfchainError` `INVALID_INPUT` (wrong value, size past a
//! bound) naming the field, and the method returns it with the borrows released.
//!
//! Sizes are bounded before anything is copied: a number where bytes are expected is a
//! `TypeError` (never `new Uint8Array(n)`), one byte string is at most [`MAX_BYTES`], one list at
//! most [`MAX_ITEMS`] items, and all the bytes of one call at most [`MAX_CALL_BYTES`].

use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

use crate::bad;

/// The most bytes one byte string may hold (the largest block TL can frame).
pub(crate) const MAX_BYTES: usize = engine::limits::MAX_BLOCK_SIZE;
/// The most items one list may hold (updates, blocks of an update, user ids).
pub(crate) const MAX_ITEMS: usize = 65_536;
/// The most bytes all the byte strings of one call may hold together.
pub(crate) const MAX_CALL_BYTES: usize = 4 * MAX_BYTES;

/// What a value is, for messages: `typeof`, with `null` and arrays told apart.
fn describe(v: &JsValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    if js_sys::Array::is_array(v) {
        return "an array".into();
    }
    v.js_typeof().as_string().unwrap_or_default()
}

/// A `TypeError`: `field` should have been `expected`.
pub(crate) fn type_error(field: &str, expected: &str, got: &JsValue) -> JsValue {
    js_sys::TypeError::new(&format!("{field}: expected {expected}, got {}", describe(got))).into()
}

/// A time in milliseconds: a non-negative integer a double holds exactly (NaN, infinities,
/// negative and fractional values are refused).
pub(crate) fn time(v: f64, field: &str) -> Result<u64, JsValue> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_SAFE {
        Ok(v as u64)
    } else {
        Err(bad(&format!("{field}: expected a non-negative integer number of milliseconds, got {v}")))
    }
}

/// `o[key]`, or undefined when `o` has no such property or is not an object (never throws: a
/// throwing getter reads as undefined).
pub(crate) fn get(o: &JsValue, key: &str) -> JsValue {
    if !o.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(o, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// A session's configuration from `{ callSizeLimit: 1000, pruneLeft: false, ... }`: each
/// property a field of `SessionConfig` in camelCase, a non-negative integer (a flag: a boolean);
/// undefined or null is the default. An unknown property (a typo) is refused, as is a value out
/// of its field's range (by the core's checks, when the session is made).
pub(crate) fn session_config(v: &JsValue) -> Result<engine::session::SessionConfig, JsValue> {
    use engine::session::SessionConfig;
    let mut config = SessionConfig::default();
    if v.is_undefined() || v.is_null() {
        return Ok(config);
    }
    if !v.is_object() || js_sys::Array::is_array(v) {
        return Err(type_error("config", "an object", v));
    }
    let keys = Reflect::own_keys(v).map_err(|_| bad("config: its properties cannot be listed"))?;
    for key in keys.iter() {
        let camel = key.as_string().ok_or_else(|| type_error("config key", "a string", &key))?;
        let name = snake_case(&camel);
        let field = SessionConfig::FIELDS
            .iter()
            .find(|f| **f == name)
            .ok_or_else(|| bad(&format!("config: SessionConfig has no field {camel:?}")))?;
        let value = get(v, &camel);
        let n = if SessionConfig::FLAGS.contains(field) {
            match value.as_bool() {
                Some(b) => u64::from(b),
                None if value.is_undefined() || value.is_null() => continue,
                None => return Err(type_error(&format!("config.{camel}"), "a boolean", &value)),
            }
        } else {
            match value.as_f64() {
                Some(n) if n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n) => n as u64,
                Some(n) => return Err(bad(&format!("config.{camel}: expected a non-negative integer, got {n}"))),
                None if value.is_undefined() || value.is_null() => continue,
                None => return Err(type_error(&format!("config.{camel}"), "a number", &value)),
            }
        };
        config.set(field, n).map_err(|e| bad(e.message()))?;
    }
    Ok(config)
}

/// `callSizeLimit` → `call_size_limit`.
pub(crate) fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `call_size_limit` → `callSizeLimit`.
pub(crate) fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A 32-bit integer.
pub(crate) fn int(v: &JsValue, field: &str) -> Result<i32, JsValue> {
    let n = v.as_f64().ok_or_else(|| type_error(field, "a number", v))?;
    if n.fract() != 0.0 || n < f64::from(i32::MIN) || n > f64::from(i32::MAX) {
        return Err(bad(&format!("{field}: expected a 32-bit integer, got {n}")));
    }
    Ok(n as i32)
}

/// A user id: a bigint, or a number that is a safe integer.
pub(crate) fn user_id(v: &JsValue, field: &str) -> Result<i64, JsValue> {
    if v.is_bigint() {
        let b: js_sys::BigInt = v.clone().unchecked_into();
        return i64::try_from(b).map_err(|_| bad(&format!("{field}: out of the 64-bit range")));
    }
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0 => Ok(n as i64),
        Some(n) => Err(bad(&format!("{field}: expected an integer user id, got {n}"))),
        None => Err(type_error(field, "a bigint", v)),
    }
}

/// A genuine `Uint8Array` (or subclass, such as Node's `Buffer`), not yet copied.
fn uint8_array<'a>(v: &'a JsValue, field: &str) -> Result<&'a Uint8Array, JsValue> {
    // `ArrayBuffer.isView` is false for look-alikes (a proxy, an object with a `length`) whose
    // typed-array getters would throw.
    if !ArrayBuffer::is_view(v) {
        return Err(type_error(field, "a Uint8Array", v));
    }
    v.dyn_ref::<Uint8Array>().ok_or_else(|| type_error(field, "a Uint8Array", v))
}

/// The byte length of a `Uint8Array` argument, at most `max`.
fn checked_len(a: &Uint8Array, field: &str, max: usize) -> Result<usize, JsValue> {
    let n = a.length() as usize;
    if n > max {
        return Err(bad(&format!("{field}: {n} bytes, at most {max}")));
    }
    Ok(n)
}

/// The bytes of a `Uint8Array` argument, at most [`MAX_BYTES`].
pub(crate) fn bytes(v: &JsValue, field: &str) -> Result<Vec<u8>, JsValue> {
    let a = uint8_array(v, field)?;
    checked_len(a, field, MAX_BYTES)?;
    Ok(a.to_vec())
}

/// Exactly 32 bytes, copied straight into a stack array (no heap copy to wipe).
pub(crate) fn bytes32(v: &JsValue, field: &str) -> Result<[u8; 32], JsValue> {
    let a = uint8_array(v, field)?;
    if a.length() != 32 {
        return Err(bad(&format!("{field}: expected 32 bytes, got {}", a.length())));
    }
    let mut out = [0u8; 32];
    a.copy_to(&mut out);
    Ok(out)
}

/// The items of an array argument, at most [`MAX_ITEMS`] (read without running user code that
/// could throw past us: a throwing element reads as an error).
pub(crate) fn items(v: &JsValue, field: &str) -> Result<Vec<JsValue>, JsValue> {
    if !js_sys::Array::is_array(v) {
        return Err(type_error(field, "an array", v));
    }
    let len = get(v, "length").as_f64().unwrap_or(0.0);
    if !(0.0..=MAX_ITEMS as f64).contains(&len) {
        return Err(bad(&format!("{field}: {len} items, at most {MAX_ITEMS}")));
    }
    (0..len as u32).map(|i| Reflect::get_u32(v, i).map_err(|_| bad(&format!("{field}[{i}]: unreadable")))).collect()
}

/// Byte strings that share one call's budget of [`MAX_CALL_BYTES`]: each is checked (type and
/// size) before the budget is charged, and nothing is copied past it.
pub(crate) struct Budget(usize);

impl Budget {
    /// A fresh budget for one call.
    pub(crate) fn new() -> Self {
        Budget(MAX_CALL_BYTES)
    }

    /// The bytes of a `Uint8Array` argument, charged to the budget.
    pub(crate) fn bytes(&mut self, v: &JsValue, field: &str) -> Result<Vec<u8>, JsValue> {
        let a = uint8_array(v, field)?;
        let n = checked_len(a, field, MAX_BYTES)?;
        self.0 = self
            .0
            .checked_sub(n)
            .ok_or_else(|| bad(&format!("{field}: the call's byte strings exceed {MAX_CALL_BYTES} bytes")))?;
        Ok(a.to_vec())
    }
}
