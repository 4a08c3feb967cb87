//! Short names for the wasm's imports. wasm-bindgen names each import after what it wraps plus a
//! hash (`__wbg_setRequestHeader_9f1e3c0b2a7d4e51`), once in the wasm's import section and once
//! as a key of the import object in its JavaScript: 133 imports, 3.5 KiB of the package gzipped,
//! the hashes being what compresses worst. Both get the same short names here.

use crate::Result;

/// The module wasm-bindgen's JavaScript provides the imports as.
const GLUE_MODULE: &str = "./ferry_wasm_bg.js";

/// `wasm` and its `glue` JavaScript, with every import of [`GLUE_MODULE`] renamed to a short name
/// in both. Each name must be in the JavaScript exactly once, as a key (`name:`), or nothing is
/// renamed: the glue is not the shape this step knows.
pub fn shorten(wasm: &[u8], glue: &str) -> Result<(Vec<u8>, String)> {
    let mut reader = Reader { bytes: wasm, at: 0 };
    if reader.take(8)? != b"\0asm\x01\0\0\0" {
        return Err("not a wasm module of version 1".into());
    }
    let mut out = wasm[..8].to_vec();
    let mut glue = glue.to_owned();
    while reader.at < wasm.len() {
        let id = reader.byte()?;
        let size = reader.uleb()? as usize;
        let payload = reader.take(size)?;
        if id != IMPORT_SECTION {
            out.push(id);
            write_uleb(&mut out, size as u64);
            out.extend_from_slice(payload);
            continue;
        }
        let section = rename_imports(payload, &mut glue)?;
        out.push(id);
        write_uleb(&mut out, section.len() as u64);
        out.extend(section);
    }
    Ok((out, glue))
}

const IMPORT_SECTION: u8 = 2;

/// The import section `payload` with [`GLUE_MODULE`]'s names shortened, in the section and in
/// `glue`.
fn rename_imports(payload: &[u8], glue: &mut String) -> Result<Vec<u8>> {
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    let count = reader.uleb()?;
    let mut out = Vec::new();
    write_uleb(&mut out, count);
    let mut renamed = 0;
    for _ in 0..count {
        let module = reader.name()?;
        let name = reader.name()?;
        let description = reader.import_description()?;
        let name = if module == GLUE_MODULE {
            let short = short_name(renamed);
            renamed += 1;
            let key = format!("{name}:");
            if glue.matches(name).count() != 1 || !glue.contains(&key) {
                return Err(format!(
                    "the import {name} is not a key of the JavaScript's import object, once"
                ));
            }
            *glue = glue.replacen(&key, &format!("{short}:"), 1);
            short
        } else {
            name.to_owned()
        };
        for text in [module, &name] {
            write_uleb(&mut out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(description);
    }
    if reader.at != payload.len() {
        return Err("the import section has bytes after its imports".into());
    }
    if renamed == 0 {
        return Err(format!(
            "no import of {GLUE_MODULE}: not wasm-bindgen's glue"
        ));
    }
    Ok(out)
}

/// `a` … `Z`, then `aa` …: names no import of wasm-bindgen's has (they all start with `__wbg`
/// or `__wbindgen`), so renaming one never makes another's text.
fn short_name(mut index: usize) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut name = Vec::new();
    loop {
        name.push(LETTERS[index % LETTERS.len()]);
        index /= LETTERS.len();
        if index == 0 {
            break;
        }
        index -= 1;
    }
    name.reverse();
    String::from_utf8(name).expect("letters are UTF-8")
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or("the wasm ends inside a section")?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn uleb(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a LEB128 number longer than 64 bits".into())
    }

    fn name(&mut self) -> Result<&'a str> {
        let len = self.uleb()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| "a name that is not UTF-8".into())
    }

    /// What an import is (a function's type, a table, a memory, a global, a tag), as its bytes.
    fn import_description(&mut self) -> Result<&'a [u8]> {
        let start = self.at;
        match self.byte()? {
            // A function: its type's index.
            0x00 => {
                self.uleb()?;
            }
            // A table: its element type, then its limits.
            0x01 => {
                self.plain_value_type()?;
                self.limits()?;
            }
            0x02 => self.limits()?,
            // A global: its type, then whether it is mutable.
            0x03 => {
                self.plain_value_type()?;
                self.byte()?;
            }
            // A tag: its attribute, then its type's index.
            0x04 => {
                self.byte()?;
                self.uleb()?;
            }
            kind => return Err(format!("an import of unknown kind {kind:#x}")),
        }
        Ok(&self.bytes[start..self.at])
    }

    /// A value type of one byte (numbers, vectors, `funcref`, `externref`).
    fn plain_value_type(&mut self) -> Result {
        match self.byte()? {
            0x6f..=0x7f => Ok(()),
            other => Err(format!("a value type this step does not read: {other:#x}")),
        }
    }

    /// A table's or a memory's limits: flags, a minimum, and a maximum when flag 1 says so
    /// (flags 2 and 4, shared and 64-bit, change no layout).
    fn limits(&mut self) -> Result {
        let flags = self.byte()?;
        if flags & !0b111 != 0 {
            return Err(format!(
                "limits with flags this step does not read: {flags:#x}"
            ));
        }
        self.uleb()?;
        if flags & 1 != 0 {
            self.uleb()?;
        }
        Ok(())
    }
}

fn write_uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            return out.push(byte);
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing a function and a memory from the glue and a function from elsewhere,
    /// with a type section before and a custom section after.
    fn module(glue_function: &str, glue_memory: &str) -> Vec<u8> {
        module_of(GLUE_MODULE, glue_function, glue_memory)
    }

    fn module_of(glue: &str, glue_function: &str, glue_memory: &str) -> Vec<u8> {
        let mut imports = Vec::new();
        write_uleb(&mut imports, 3);
        let mut import = |module: &str, name: &str, description: &[u8]| {
            for text in [module, name] {
                write_uleb(&mut imports, text.len() as u64);
                imports.extend_from_slice(text.as_bytes());
            }
            imports.extend_from_slice(description);
        };
        import(glue, glue_function, &[0x00, 0x00]);
        import("env", "__wbg_elsewhere_0123", &[0x00, 0x00]);
        import(glue, glue_memory, &[0x02, 0x01, 0x11, 0x80, 0x01]);
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        // One type: a function of nothing to nothing.
        module.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
        module.push(IMPORT_SECTION);
        write_uleb(&mut module, imports.len() as u64);
        module.extend(imports);
        module.extend_from_slice(&[0x00, 0x03, 0x01, b'x', 0x07]);
        module
    }

    #[test]
    fn the_glue_s_imports_get_the_same_short_names_in_the_wasm_and_its_javascript() {
        let function = "__wbg_setRequestHeader_9f1e3c0b2a7d4e51";
        let memory = "__wbindgen_memory_a1b2c3d4e5f60718";
        let glue = format!(
            "const i={{__proto__:null,\"{GLUE_MODULE}\":{{{function}:function(e){{}},{memory}:()=>m}}}};"
        );
        let (wasm, glue) = shorten(&module(function, memory), &glue).unwrap();
        assert_eq!(wasm, module("a", "b"));
        assert_eq!(
            glue,
            format!("const i={{__proto__:null,\"{GLUE_MODULE}\":{{a:function(e){{}},b:()=>m}}}};")
        );
    }

    #[test]
    fn an_import_the_javascript_does_not_name_once_as_a_key_renames_nothing() {
        let function = "__wbg_f_00";
        let memory = "__wbg_m_11";
        for glue in [
            format!("{{{function}:1}}"),
            format!("{{{function}:1,{memory}:2,x:{memory}}}"),
            format!("{{{function}:1,y:\"{memory}\"}}"),
        ] {
            let error = shorten(&module(function, memory), &glue).unwrap_err();
            assert!(error.contains(memory), "{error}");
        }
    }

    #[test]
    fn a_module_without_the_glue_s_imports_is_an_error() {
        let glue = "{__wbg_f_00:1,__wbg_m_11:2}";
        let elsewhere = module_of("./other_bg.js", "__wbg_f_00", "__wbg_m_11");
        let error = shorten(&elsewhere, glue).unwrap_err();
        assert!(error.contains("no import"), "{error}");
    }

    #[test]
    fn a_module_cut_short_is_an_error() {
        let whole = module("__wbg_f_00", "__wbg_m_11");
        let glue = "{__wbg_f_00:1,__wbg_m_11:2}";
        assert!(shorten(&whole, glue).is_ok());
        for len in [0, 7, 10, whole.len() - 1] {
            assert!(shorten(&whole[..len], glue).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn short_names_count_through_letters_then_pairs() {
        let names: Vec<String> = [0, 25, 26, 51, 52, 53, 52 + 52 * 52 - 1]
            .into_iter()
            .map(short_name)
            .collect();
        assert_eq!(names, ["a", "z", "A", "Z", "aa", "ab", "ZZ"]);
    }
}
