//! Reading the archives `make images` writes, with no crate for it: ustar
//! entries (with pax `path`/`linkpath` records); gzip and SHA-256 through
//! the system's `gzip -dc` and `sha256sum`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

/// Decompresses with the system's gzip (the tests crate has no inflater).
pub fn gunzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    filter("gzip", &["-dc"], data)
}

/// The SHA-256 of `data` in hex, from the system's sha256sum: sha2 built
/// without optimisation (the dev profile) takes seconds per image.
pub fn sha256(data: &[u8]) -> anyhow::Result<String> {
    let output = String::from_utf8(filter("sha256sum", &[], data)?)?;
    let digest = output.split_whitespace().next().unwrap_or_default();
    ensure!(digest.len() == 64, "sha256sum printed {output:?}");
    Ok(digest.to_owned())
}

/// What `program args` writes given `data` on its standard input.
fn filter(program: &str, args: &[&str], data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(data));
        let output = child.wait_with_output();
        (writer.join(), output)
    });
    let (written, output) = output;
    written.map_err(|_| anyhow::anyhow!("writing to {program} panicked"))??;
    let output = output?;
    ensure!(output.status.success(), "{program}: {}", output.status);
    Ok(output.stdout)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One tar entry.
#[derive(Debug)]
pub struct Entry {
    /// Without a leading `/` or `./` (the root directory is "").
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub link: String,
    pub data: Vec<u8>,
}

/// The entries of a ustar archive (with pax `path`/`linkpath` records);
/// other entry types (hard links, devices) are refused: no image has them.
pub fn read(archive: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut offset = 0;
    let mut pax = BTreeMap::new();
    while offset + 512 <= archive.len() {
        let header = &archive[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        let field = |start: usize, len: usize| -> &[u8] {
            let bytes = &header[start..start + len];
            &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(len)]
        };
        let number = |start: usize, len: usize| -> anyhow::Result<u64> {
            let text = std::str::from_utf8(field(start, len))?.trim();
            Ok(if text.is_empty() {
                0
            } else {
                u64::from_str_radix(text, 8)?
            })
        };
        ensure!(
            &header[257..262] == b"ustar",
            "entry at {offset}: not a ustar header"
        );
        let size = usize::try_from(number(124, 12)?)?;
        let data = archive
            .get(offset + 512..offset + 512 + size)
            .context("archive ends inside an entry")?
            .to_vec();
        offset += 512 + size.div_ceil(512) * 512;
        let typeflag = header[156];
        if typeflag == b'x' {
            pax = pax_records(&data)?;
            continue;
        }
        let prefix = String::from_utf8(field(345, 155).to_vec())?;
        let name = String::from_utf8(field(0, 100).to_vec())?;
        let name = pax.remove("path").unwrap_or(if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        });
        let link = pax
            .remove("linkpath")
            .unwrap_or(String::from_utf8(field(157, 100).to_vec())?);
        pax.clear();
        let kind = match typeflag {
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            other => bail!(
                "{name}: tar entry type {:?} (no image needs one)",
                other as char
            ),
        };
        let path = name
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        entries.push(Entry {
            path: path.to_owned(),
            kind,
            mode: u32::try_from(number(100, 8)?)?,
            uid: u32::try_from(number(108, 8)?)?,
            gid: u32::try_from(number(116, 8)?)?,
            mtime: number(136, 12)?,
            link,
            data,
        });
    }
    bail!("tar archive without its end-of-archive blocks")
}

/// pax extended header records: "<length> <key>=<value>\n".
fn pax_records(data: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut records = BTreeMap::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .context("pax record without length")?;
        let length: usize = std::str::from_utf8(&rest[..space])?.parse()?;
        let record = std::str::from_utf8(rest.get(space + 1..length).context("short pax record")?)?;
        let (key, value) = record
            .trim_end_matches('\n')
            .split_once('=')
            .context("pax record")?;
        records.insert(key.to_owned(), value.to_owned());
        rest = &rest[length..];
    }
    Ok(records)
}
