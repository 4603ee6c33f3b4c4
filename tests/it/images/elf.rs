//! Just enough of ELF (64-bit little-endian, what Ambit's images hold) to
//! tell what a file needs from the dynamic loader: its program interpreter
//! (PT_INTERP) and its DT_NEEDED libraries.

use anyhow::{Context, ensure};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// What an ELF file asks of the loader.
#[derive(Debug)]
pub struct Needs {
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
}

struct Segment {
    kind: u32,
    offset: usize,
    vaddr: u64,
    filesz: usize,
}

/// None for a file that is not ELF.
pub fn read(data: &[u8]) -> anyhow::Result<Option<Needs>> {
    if !data.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    ensure!(
        data.get(4..6) == Some(&[2, 1][..]),
        "not a 64-bit little-endian ELF"
    );
    let u16_at = |at: usize| -> anyhow::Result<u16> {
        Ok(u16::from_le_bytes(
            data.get(at..at + 2).context("truncated")?.try_into()?,
        ))
    };
    let u32_at = |at: usize| -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(
            data.get(at..at + 4).context("truncated")?.try_into()?,
        ))
    };
    let u64_at = |at: usize| -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(
            data.get(at..at + 8).context("truncated")?.try_into()?,
        ))
    };
    let string = |at: usize| -> anyhow::Result<String> {
        let bytes = data.get(at..).context("string past the end")?;
        let end = bytes
            .iter()
            .position(|&b| b == 0)
            .context("unterminated string")?;
        Ok(String::from_utf8(bytes[..end].to_vec())?)
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    let mut segments = Vec::new();
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)? + i * usize::from(phentsize);
        segments.push(Segment {
            kind: u32_at(at)?,
            offset: usize::try_from(u64_at(at + 8)?)?,
            vaddr: u64_at(at + 16)?,
            filesz: usize::try_from(u64_at(at + 32)?)?,
        });
    }
    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(s) => Some(string(s.offset)?),
        None => None,
    };
    let mut needed = Vec::new();
    if let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) {
        let mut names = Vec::new();
        let mut strtab = None;
        for at in (dynamic.offset..dynamic.offset + dynamic.filesz).step_by(16) {
            match u64_at(at)? {
                0 => break,
                DT_NEEDED => names.push(u64_at(at + 8)?),
                DT_STRTAB => strtab = Some(u64_at(at + 8)?),
                _ => {}
            }
        }
        if !names.is_empty() {
            let strtab = strtab.context("DT_NEEDED without DT_STRTAB")?;
            let load = segments
                .iter()
                .find(|s| {
                    s.kind == PT_LOAD && s.vaddr <= strtab && strtab < s.vaddr + s.filesz as u64
                })
                .context("DT_STRTAB outside every PT_LOAD")?;
            let base = load.offset + usize::try_from(strtab - load.vaddr)?;
            for name in names {
                needed.push(string(base + usize::try_from(name)?)?);
            }
        }
    }
    Ok(Some(Needs {
        interpreter,
        needed,
    }))
}
