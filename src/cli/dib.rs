//! disk-image-create's command line: the binary invoked as `disk-image-create` (a symlink, as
//! nodepool-builder and DIB's own docs call it) is `mesos-image build` with DIB's naming of the
//! output (`-o NAME` is the image name; each `-t` type is written as `NAME.<type>`, default
//! `image.qcow2`), and disk-image-create's flags we do not implement fail with one line naming
//! them, in both spellings of the command.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

use super::{Cli, Command};

/// The program name nodepool-builder and DIB users run.
pub const PROGRAM: &str = "disk-image-create";

/// disk-image-create flags mesos-image does not implement, with why and what to do instead.
const UNSUPPORTED: [(&str, &str); 5] = [
    ("-c", "clearing the environment is not supported; run under `env -i` instead"),
    ("--max-online-resize", "the root filesystem is made by mkfs.ext4 -d with its default resize limit"),
    ("--mkfs-journal-size", "the root filesystem is made by mkfs.ext4 -d with its default journal"),
    ("--ramdisk-element", "ramdisk images are not built"),
    ("--docker-target", "docker output is not built"),
];

/// disk-image-create image types (`-t`) that are not built, with why.
const UNSUPPORTED_TYPES: [(&str, &str); 3] = [
    ("docker", "docker output is not built"),
    ("aci", "aci output is not built"),
    ("qcow2-compressed", "qcow2 is written compressed by default (-u to turn it off)"),
];

/// Whether the binary was started under disk-image-create's name.
pub fn invoked_as_disk_image_create(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name().is_some_and(|name| name == PROGRAM)
}

/// A disk-image-create flag we refuse, as one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("{PROGRAM} option `{flag}` is not supported: {why}")]
pub struct UnsupportedFlag {
    pub flag: String,
    pub why: &'static str,
}

/// The first argument that is a disk-image-create flag (or `-t` image type) we do not implement.
pub fn find_unsupported(args: &[OsString]) -> Option<UnsupportedFlag> {
    let mut words = args.iter().map(|arg| arg.to_string_lossy());
    while let Some(text) = words.next() {
        if text == "--" {
            return None;
        }
        let (flag, inline) = match text.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (text.as_ref(), None),
        };
        if let Some((name, why)) = UNSUPPORTED.iter().find(|(name, _)| *name == flag) {
            return Some(UnsupportedFlag { flag: (*name).to_owned(), why });
        }
        // `-t TYPES`, `-tTYPES`, `--format TYPES`, `--format=TYPES`.
        let types = match flag {
            "-t" | "--format" => inline.or_else(|| words.next().map(|w| w.into_owned())),
            short if short.starts_with("-t") && short.len() > 2 => Some(short[2..].to_owned()),
            _ => None,
        };
        for kind in types.iter().flat_map(|list| list.split(',')) {
            if let Some((name, why)) = UNSUPPORTED_TYPES.iter().find(|(name, _)| *name == kind.trim()) {
                return Some(UnsupportedFlag { flag: format!("-t {name}"), why });
            }
        }
    }
    None
}

/// Parse disk-image-create's command line (`args[0]` is the program) into a `build` command.
/// Clap's own errors are turned into one line; `--help` and `--version` print and exit.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let rest = args.get(1..).unwrap_or_default().to_vec();
    if let Some(unsupported) = find_unsupported(&rest) {
        return Err(unsupported.into());
    }
    let has_output = rest.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "-o" || a == "--output" || a.starts_with("--output=") || (a.starts_with("-o") && !a.starts_with("--"))
    });
    let mut argv: Vec<OsString> = vec![PROGRAM.into(), "build".into()];
    if !has_output {
        // disk-image-create's IMAGE_NAME default.
        argv.extend(["-o".into(), "image".into()]);
    }
    argv.extend(rest);
    let mut cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => err.exit(),
        Err(err) => anyhow::bail!("{}", one_line(&err)),
    };
    if let Command::Build(build) = &mut cli.command {
        // `build` without elements plans the default recipe; disk-image-create never does that.
        if build.elements.is_empty() {
            anyhow::bail!(
                "disk-image-create: no elements given: name the elements to build (e.g. `debian-minimal vm`)"
            );
        }
        let types: Vec<String> = build.format.iter().map(|f| f.extension().to_owned()).collect();
        build.output = build.output.take().map(|name| output_path(&name, &types));
    }
    Ok(cli)
}

/// DIB's naming: `-o NAME` writes `NAME.<type>`; with one type, a NAME already ending in
/// `.<type>` is kept (disk-image-create strips it before adding it back).
pub fn output_path(name: &Path, types: &[String]) -> PathBuf {
    let first = types.first().map(String::as_str).unwrap_or("qcow2");
    let already = name.extension().is_some_and(|ext| ext == first);
    if already && types.len() <= 1 {
        return name.to_owned();
    }
    let mut path = name.as_os_str().to_owned();
    path.push(".");
    path.push(first);
    PathBuf::from(path)
}

/// A clap error as one line naming the culprit.
pub fn one_line(err: &clap::Error) -> String {
    let culprit = err.get(ContextKind::InvalidArg).and_then(|value| match value {
        ContextValue::String(text) => Some(text.clone()),
        ContextValue::Strings(list) => list.first().cloned(),
        _ => None,
    });
    match (err.kind(), culprit) {
        (ErrorKind::UnknownArgument, Some(arg)) => format!("{PROGRAM}: unknown option `{arg}`"),
        _ => {
            let rendered = err.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            format!("{PROGRAM}: {}", first.trim_start_matches("error: "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn build_args(list: &[&str]) -> Box<crate::cli::build::BuildArgs> {
        match parse(args(list)).unwrap().command {
            Command::Build(build) => build,
            other => panic!("not a build: {other:?}"),
        }
    }

    #[test]
    fn argv0_decides_the_mode() {
        assert!(invoked_as_disk_image_create(OsStr::new("/usr/local/bin/disk-image-create")));
        assert!(!invoked_as_disk_image_create(OsStr::new("mesos-image")));
    }

    #[test]
    fn dib_command_lines_become_builds() {
        let build = build_args(&[
            "disk-image-create",
            "-a",
            "amd64",
            "-x",
            "-x",
            "-o",
            "deb",
            "debian-minimal",
            "vm",
            "--image-size",
            "2",
        ]);
        assert_eq!(build.elements, ["debian-minimal", "vm"]);
        assert_eq!(build.output.as_deref(), Some(Path::new("deb.qcow2")));
        assert_eq!(build.arch.as_deref(), Some("amd64"));
        assert_eq!(build.trace, 2);
        assert_eq!(build.image_size.as_ref().map(|s| (s.as_str(), s.bytes())), Some(("2048M", 2048 << 20)));
        let default_name = build_args(&["disk-image-create", "-t", "raw", "ubuntu"]);
        assert_eq!(default_name.output.as_deref(), Some(Path::new("image.raw")));
        let kept = build_args(&["disk-image-create", "-o", "x.qcow2", "ubuntu", "--logfile", "l.log"]);
        assert_eq!(kept.output.as_deref(), Some(Path::new("x.qcow2")));
        assert_eq!(kept.log_file.as_deref(), Some(Path::new("l.log")));
        let tree = build_args(&[
            "disk-image-create",
            "-t",
            "tar,tgz,squashfs",
            "-o",
            "t",
            "--image-extra-size",
            "1",
            "--mkfs-options",
            "-N 90000 -m 0",
            "debian",
        ]);
        let formats: Vec<&str> = tree.format.iter().map(|f| f.name()).collect();
        assert_eq!(formats, ["tar", "tgz", "squashfs"]);
        assert_eq!(tree.output.as_deref(), Some(Path::new("t.tar")));
        assert_eq!(tree.image_extra_size.as_ref().map(|s| (s.as_str(), s.bytes())), Some(("1024M", 1024 << 20)));
        assert_eq!(tree.mkfs_options.as_deref(), Some("-N 90000 -m 0"));
        let squash = build_args(&["disk-image-create", "-t", "squashfs", "-o", "s", "debian"]);
        assert_eq!(squash.output.as_deref(), Some(Path::new("s.squash")));
        let tmpfs = build_args(&["disk-image-create", "--no-tmpfs", "--min-tmpfs", "4", "debian"]);
        assert!(tmpfs.no_tmpfs);
        assert_eq!(tmpfs.min_tmpfs, Some(4));
    }

    #[test]
    fn unsupported_and_unknown_flags_are_one_line_naming_them() {
        let err = parse(args(&["disk-image-create", "--docker-target", "x", "ubuntu"])).unwrap_err().to_string();
        assert!(err.starts_with("disk-image-create option `--docker-target` is not supported"), "{err}");
        assert!(!err.contains('\n'));
        for (line, flag) in [
            (&["disk-image-create", "-t", "qcow2,docker", "debian"][..], "`-t docker`"),
            (&["disk-image-create", "-taci", "debian"][..], "`-t aci`"),
            (&["disk-image-create", "--max-online-resize", "1", "debian"][..], "`--max-online-resize`"),
        ] {
            let err = parse(args(line)).unwrap_err().to_string();
            assert!(err.starts_with(&format!("disk-image-create option {flag} is not supported: ")), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = parse(args(&["disk-image-create", "-o", "x"])).unwrap_err().to_string();
        assert!(err.starts_with("disk-image-create: no elements given"), "{err}");
        let err = parse(args(&["disk-image-create", "--bogus-flag", "ubuntu"])).unwrap_err().to_string();
        assert_eq!(err, "disk-image-create: unknown option `--bogus-flag`");
        let err = parse(args(&["disk-image-create", "--image-size", "lots", "ubuntu"])).unwrap_err().to_string();
        assert!(err.contains("lots") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn output_naming_follows_image_types() {
        let types = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(output_path(Path::new("out/img"), &types(&["qcow2"])), Path::new("out/img.qcow2"));
        assert_eq!(output_path(Path::new("img.qcow2"), &types(&["qcow2"])), Path::new("img.qcow2"));
        assert_eq!(output_path(Path::new("img.raw"), &types(&["qcow2"])), Path::new("img.raw.qcow2"));
        assert_eq!(output_path(Path::new("img"), &[]), Path::new("img.qcow2"));
    }
}
