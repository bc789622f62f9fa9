//! disk-image-create's command line: the binary invoked as `disk-image-create` (a symlink, as
//! nodepool-builder and DIB's own docs call it) is `mesos-image build` with DIB's naming of the
//! output (`-o NAME` is the image name; each `-t` type is written as `NAME.<type>`, default
//! `image.qcow2`), DIB's layout (everything but the images and their checksums in `NAME.d/`,
//! [`OutputLayout::Dib`]) and DIB's log (`progress::LogStyle::dib`); disk-image-create's flags we do not
//! implement fail with one line naming them, in both spellings of the command.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::builder::Resettable;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Id, Parser};

pub use super::args::build::UnsupportedFlag;
use super::{Cli, Command};
use crate::layout::OutputLayout;

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

/// Whether the binary was started under disk-image-create's name.
pub fn invoked_as_disk_image_create(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name().is_some_and(|name| name == PROGRAM)
}

/// The first argument that is a disk-image-create flag we do not implement (the image types
/// of `-t` are refused by its own parse, [`UnsupportedFlag::in_clap_error`]).
pub fn find_unsupported(args: &[OsString]) -> Option<UnsupportedFlag> {
    for text in args.iter().map(|arg| arg.to_string_lossy()) {
        if text == "--" {
            return None;
        }
        let flag = match text.split_once('=') {
            Some((flag, _)) if flag.starts_with("--") => flag,
            _ => text.as_ref(),
        };
        if let Some((name, why)) = UNSUPPORTED.iter().find(|(name, _)| *name == flag) {
            return Some(UnsupportedFlag { flag: (*name).to_owned(), why });
        }
    }
    None
}

/// `mesos-image build ...` and every other command: disk-image-create's flags we refuse are one
/// line naming them; clap prints its own errors, help and version, and exits.
pub fn parse_mesos_image(args: Vec<OsString>) -> anyhow::Result<Cli> {
    if args.get(1).is_some_and(|a| a == "build") {
        if let Some(unsupported) = find_unsupported(&args[2..]) {
            return Err(unsupported.into());
        }
    }
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(cli),
        Err(err) => match UnsupportedFlag::in_clap_error(&err) {
            Some(unsupported) => Err(unsupported.into()),
            None => err.exit(),
        },
    }
}

/// Parse disk-image-create's command line (`args[0]` is the program) into a `build` command.
/// Clap's own errors are turned into one line; `--help` and `--version` print and exit.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let rest = args.get(1..).unwrap_or_default().to_vec();
    if let Some(unsupported) = find_unsupported(&rest) {
        return Err(unsupported.into());
    }
    let argv = [PROGRAM.into(), "build".into()].into_iter().chain(rest);
    // disk-image-create's IMAGE_NAME default, as the default of `-o`.
    let command = Cli::command().mut_subcommand("build", |build| {
        build.mut_arg("output", |output| output.default_value("image").required_unless_present(Resettable::<Id>::Reset))
    });
    let parsed = command.try_get_matches_from(argv).and_then(|matches| Cli::from_arg_matches(&matches));
    let mut cli = match parsed {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => err.exit(),
        Err(err) => match UnsupportedFlag::in_clap_error(&err) {
            Some(unsupported) => return Err(unsupported.into()),
            None => anyhow::bail!("{}", one_line(&err)),
        },
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
        build.layout = OutputLayout::Dib;
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
    fn disk_image_create_builds_get_dibs_layout() {
        assert_eq!(build_args(&["disk-image-create", "-o", "x", "debian"]).layout, OutputLayout::Dib);
        let ours = match parse_mesos_image(args(&["mesos-image", "build", "-o", "x.qcow2", "debian"])).unwrap().command
        {
            Command::Build(build) => build.layout,
            other => panic!("not a build: {other:?}"),
        };
        assert_eq!(ours, OutputLayout::Beside);
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
