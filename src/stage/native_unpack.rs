//! Under emulation, programs whose work does not depend on the CPU that runs them run natively:
//! the host's own, from its `/usr` bound read-only into the tree for the length of one apt run
//! and the deferred work after it (`deferred`).
//!
//! The kernel starts a host program inside the tree with no wrapper: for that time the tree
//! also holds the host's dynamic loader at the path the host's programs name
//! (`/lib64/ld-linux-x86-64.so.2` on amd64) and the host's library directory
//! (`/usr/lib/x86_64-linux-gnu`), symlinks into the bind, made only where the tree has nothing
//! (an arm64 tree has neither) and removed afterwards. The target's loader and libraries live
//! elsewhere and never look there; the tree's `ld.so.cache` is the target's, whose entries the
//! host's loader skips by their architecture flags. A `#!/bin/sh` wrapper would cost an
//! emulated dash start (~20 ms) per call, as much as most programs it would save. While the
//! initramfs is made the interpreter's link is gone (see [`NativeUnpack::for_initramfs`]) and
//! the host's programs are started by naming the loader.
//!
//! Which host programs stand in, each only where the host has the very version of the package
//! the tree has (read from both dpkg status files), save dpkg-deb:
//! - `dpkg-deb`, for every apt run: dpkg hands it every package (`--control`, then
//!   `--fsys-tarfile`, which decompresses the data member, xz or zstd, into a plain tar stream).
//!   The stream is the same bytes whichever CPU decompresses it (checked: the arm64 cloud
//!   kernel's tar, same sha256, 1.3 s of CPU instead of 5.6 s under qemu-user); dpkg itself,
//!   which writes the files, stays the target's own.
//! - File and text tools (`STAND_INS`: coreutils' file tools, grep, sed, find, tar, cpio,
//!   gzip, zstd, modinfo, depmod), which maintainer scripts run in loops (locales' postinst a
//!   grep per supported locale, ca-certificates' per certificate) and dpkg-deb runs per
//!   package (tar), on the maintainer scripts' `PATH`. The same source built with the same options does the same on either CPU: what
//!   they write is the same (checked: the same initrd.img and /etc/ssl/certs, see README).
//!   Nothing that reports or depends on the machine stands in (`uname`, `dpkg`, `ldd`,
//!   `ldconfig`, `openssl`, getopt, busybox).
//! - Two of the target's shell scripts, read by the host's dash with the same tools as shell
//!   functions: `update-ca-certificates` (four processes per certificate, run by
//!   ca-certificates' postinst and again by its trigger) and `mkinitramfs` (several processes
//!   per module copied). Functions, as mkinitramfs sets its own `PATH`; they do not reach the
//!   processes the scripts start (mkinitramfs' hooks run the tools on their `PATH`).
//!
//! Not used for a native build (nothing to gain), nor on a host whose loader is not under
//! `/usr` (a host without merged /usr), that has no dpkg-deb, or whose loader or library
//! directory the tree already has (a tree with the host's architecture added).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::BuildContext;
use crate::dpkg_status::{self, InstalledDeb};
use crate::sandbox::{Bind, ChrootMounts};

/// Where the host's `/usr` appears inside the tree while apt runs (in the tree's `/tmp`,
/// which cleanup empties; the mount point is removed when the bind goes).
const HOST_USR: &str = "/tmp/mesos-image-host-usr";
/// Links to host programs, first on the `PATH` of the maintainer scripts.
const NATIVE_DIR: &str = "/tmp/mesos-image-native";
/// The wrappers of `SCRIPTS`, first on the `PATH` of the maintainer scripts and of
/// update-initramfs.
const WRAPPERS_DIR: &str = "/tmp/mesos-image-native/scripts";
/// Both, as `PATH` takes them.
const PATH_DIRS: &str = "/tmp/mesos-image-native/scripts:/tmp/mesos-image-native";
/// The shell functions that make `STAND_INS` stand in where `PATH` does not reach, read by
/// the wrapped `SCRIPTS` only.
const FUNCTIONS: &str = "/tmp/mesos-image-native/stand-ins.sh";

/// The target's scripts the host's dash reads, by the name their callers use.
const SCRIPTS: [&str; 2] = ["/usr/sbin/update-ca-certificates", "/usr/sbin/mkinitramfs"];

/// Host programs that may stand in for the tree's (see the module's comment), each with the
/// package that ships it: what the scripts run per certificate, locale, module or file
/// (mkinitramfs runs modprobe by absolute path: it stays the target's).
const STAND_INS: [(&str, &str); 24] = [
    ("basename", "coreutils"),
    ("cat", "coreutils"),
    ("cp", "coreutils"),
    ("dirname", "coreutils"),
    ("env", "coreutils"),
    ("ln", "coreutils"),
    ("mkdir", "coreutils"),
    ("mktemp", "coreutils"),
    ("readlink", "coreutils"),
    ("realpath", "coreutils"),
    ("rm", "coreutils"),
    ("sort", "coreutils"),
    ("test", "coreutils"),
    ("touch", "coreutils"),
    ("wc", "coreutils"),
    ("find", "findutils"),
    ("grep", "grep"),
    ("sed", "sed"),
    ("tar", "tar"),
    ("cpio", "cpio"),
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("depmod", "kmod"),
    ("modinfo", "kmod"),
];

/// The host's `/usr`, bound into the tree, and the links that make its programs run there;
/// [`NativeUnpack::release`] takes both out.
pub struct NativeUnpack {
    mounts: ChrootMounts,
    point: PathBuf,
    made: Made,
}

impl NativeUnpack {
    /// Bind the host's `/usr` when the build emulates the target and the host can lend its
    /// dpkg-deb; `None` otherwise.
    pub fn bind(ctx: &BuildContext) -> anyhow::Result<Option<NativeUnpack>> {
        let host = crate::arch::host();
        if crate::arch::runs_natively(&host, &ctx.plan.arch) {
            return Ok(None);
        }
        let Some(links) = loader(&host).and_then(|loader| loader_links(Path::new("/"), &ctx.target, loader)) else {
            return Ok(None);
        };
        let mounts = ChrootMounts::binds(&ctx.target, &[Bind::read_only("/usr", HOST_USR)])?;
        let mut made = Made::new(PathBuf::from("/"), ctx.target.clone(), links.loader.clone());
        let prepared = made.prepare(&links.links);
        let native = NativeUnpack { mounts, point: in_tree(&ctx.target, HOST_USR), made };
        if let Err(err) = prepared {
            // Leave nothing behind; the error that matters is the first one.
            let _ = native.release();
            return Err(err);
        }
        Ok(Some(native))
    }

    /// The directories to put first on the `PATH` of the maintainer scripts.
    pub fn path_dirs(&self) -> &'static str {
        PATH_DIRS
    }

    /// Ready the stand-ins for making the initramfs (after apt: the packages they must match,
    /// kmod, cpio, zstd, may come with the transaction) and take the interpreter's link out
    /// of the tree: mkinitramfs links every `/lib*` of the tree into the initramfs, so a
    /// `/lib64` would be in it. The host's programs then start only through the loader named
    /// explicitly (the wrappers and functions do so). Returns the directory to put first on
    /// update-initramfs' `PATH` (the wrappers only: a link of `NATIVE_DIR` would not start).
    pub fn for_initramfs(&mut self) -> anyhow::Result<&'static str> {
        self.made.add_stand_ins()?;
        self.made.remove_interpreter()?;
        Ok(WRAPPERS_DIR)
    }

    /// Remove what was made, unmount, and remove the (then empty) mount point.
    pub fn release(mut self) -> anyhow::Result<()> {
        let removed = self.made.remove();
        self.mounts.unmount()?;
        fs::remove_dir(&self.point).map_err(|err| anyhow::anyhow!("cannot remove {}: {err}", self.point.display()))?;
        removed
    }
}

/// What is made in the tree (loader and library links, the two directories and their
/// entries), in order; the host's `/usr` is read where it is bound (`HOST_USR`), the host's
/// packages from `host_root`.
struct Made {
    host_root: PathBuf,
    target: PathBuf,
    /// The host's loader inside the chroot.
    loader: String,
    paths: Vec<PathBuf>,
    /// The link at the host programs' interpreter path, while it is there.
    interpreter: Option<PathBuf>,
}

impl Made {
    fn new(host_root: PathBuf, target: PathBuf, loader: String) -> Made {
        Made { host_root, target, loader, paths: Vec::new(), interpreter: None }
    }

    /// Make `links` (the library directory's, then the interpreter's), the directories, the
    /// dpkg-deb link, the wrappers and the stand-ins.
    fn prepare(&mut self, links: &[(PathBuf, String)]) -> anyhow::Result<()> {
        for (link, to) in links {
            self.link(link.clone(), to)?;
        }
        self.interpreter = links.get(1).map(|(link, _)| link.clone());
        for dir in [NATIVE_DIR, WRAPPERS_DIR] {
            let dir = in_tree(&self.target, dir);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            self.paths.push(dir);
        }
        self.paths.push(in_tree(&self.target, FUNCTIONS));
        self.link(in_tree(&self.target, NATIVE_DIR).join("dpkg-deb"), &format!("{HOST_USR}/bin/dpkg-deb"))?;
        let (host, tree) = (dpkg_status::installed(&self.host_root)?, dpkg_status::installed(&self.target)?);
        if same_version(&host, &tree, "dash") && in_tree(&self.target, HOST_USR).join("bin/dash").is_file() {
            for script in SCRIPTS {
                self.wrap(script)?;
            }
        }
        self.add_stand_ins()
    }

    fn link(&mut self, link: PathBuf, to: &str) -> anyhow::Result<()> {
        std::os::unix::fs::symlink(to, &link).with_context(|| format!("cannot link {} to {to}", link.display()))?;
        self.paths.push(link);
        Ok(())
    }

    /// A wrapper of the same name in `NATIVE_DIR`: `script` read by the host's dash after the
    /// stand-ins' functions, with `$0` and the arguments it would have had. The host's dash is
    /// its interpreter, so no emulated process starts; a missing script (its package not
    /// unpacked yet) is reported as the shell would. No `exec`: the wrapper's process keeps the
    /// script's name, which process accounting (bench/arm64.sh) shows its children under, for
    /// a native dash start (~1 ms).
    fn wrap(&mut self, script: &str) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let name = script.rsplit('/').next().unwrap_or(script);
        let path = in_tree(&self.target, WRAPPERS_DIR).join(name);
        let loader = &self.loader;
        let text = format!(
            "#!{loader} {HOST_USR}/bin/dash\n\
             # mesos-image: the target's {name}, read by the host's dash (see native_unpack.rs).\n\
             [ -e {script} ] || {{ echo \"{name}: not found\" >&2; exit 127; }}\n\
             {loader} {HOST_USR}/bin/dash -c '. {FUNCTIONS}; . \"$0\"' {script} \"$@\"\n"
        );
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        self.paths.push(path.clone());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))
    }

    /// Each of `STAND_INS` the host has at the tree's version: linked in `NATIVE_DIR` (if not
    /// yet), and a function in `FUNCTIONS` (rewritten) running the host's program.
    fn add_stand_ins(&mut self) -> anyhow::Result<()> {
        let (host, tree) = (dpkg_status::installed(&self.host_root)?, dpkg_status::installed(&self.target)?);
        let (host_usr, native) = (self.host_root.join("usr"), in_tree(&self.target, NATIVE_DIR));
        let mut text = String::from("# mesos-image: the host's programs standing in (see native_unpack.rs).\n");
        for (program, package) in STAND_INS {
            let Some(real) = ["bin", "sbin"].into_iter().find_map(|dir| host_program(&host_usr, dir, program)) else {
                continue;
            };
            if same_version(&host, &tree, package) {
                // The file itself, with the name it was called by: kmod's tools are links to
                // an absolute `/bin/kmod` (inside the tree, the tree's own), and kmod acts
                // as the name in its argv[0] says.
                let (loader, real) = (&self.loader, real.display());
                text.push_str(&format!("{program}() {{ {loader} --argv0 {program} {HOST_USR}/{real} \"$@\"; }}\n"));
                if native.join(program).symlink_metadata().is_err() {
                    self.link(native.join(program), &format!("{HOST_USR}/{real}"))?;
                }
            }
        }
        let path = in_tree(&self.target, FUNCTIONS);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Take the interpreter's link out of the tree now.
    fn remove_interpreter(&mut self) -> anyhow::Result<()> {
        let Some(link) = self.interpreter.take() else { return Ok(()) };
        fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
        self.paths.retain(|path| *path != link);
        Ok(())
    }

    /// Remove everything made, last first; the first failure is reported.
    fn remove(&mut self) -> anyhow::Result<()> {
        let mut first: Option<anyhow::Error> = None;
        for path in self.paths.drain(..).rev() {
            let is_dir = path.symlink_metadata().is_ok_and(|meta| meta.is_dir());
            let removed = if is_dir { fs::remove_dir(&path) } else { fs::remove_file(&path) };
            if let Err(err) =
                removed.or_else(|err| if err.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(err) })
            {
                first.get_or_insert(anyhow::anyhow!("cannot remove {}: {err}", path.display()));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The host's `usr/DIR/PROGRAM` resolved, as the host resolves it, to the file it names,
/// relative to `usr`; `None` when there is none or it is outside `usr`.
fn host_program(usr: &Path, dir: &str, program: &str) -> Option<PathBuf> {
    let real = usr.join(dir).join(program).canonicalize().ok()?;
    let relative = real.strip_prefix(usr.canonicalize().ok()?).ok()?.to_owned();
    real.is_file().then_some(relative)
}

/// `path` (absolute inside the chroot) as seen from the host.
fn in_tree(target: &Path, path: &str) -> PathBuf {
    target.join(path.trim_start_matches('/'))
}

/// Whether the host has `package` at the version the tree has (both read from their dpkg
/// status files; a host without dpkg has none).
fn same_version(host: &[InstalledDeb], tree: &[InstalledDeb], package: &str) -> bool {
    let version = |debs: &[InstalledDeb]| debs.iter().find(|deb| deb.name == package).map(|deb| deb.version.clone());
    version(host).is_some_and(|v| Some(v) == version(tree))
}

/// The ELF interpreter of the host's programs, per Debian architecture.
fn loader(host: &str) -> Option<&'static str> {
    match host {
        "amd64" => Some("/lib64/ld-linux-x86-64.so.2"),
        "arm64" => Some("/lib/ld-linux-aarch64.so.1"),
        _ => None,
    }
}

/// What lets the host's programs run in a tree.
#[derive(Debug, PartialEq, Eq)]
struct Links {
    /// (path in the tree, what it points to inside the chroot): the library directory's, then
    /// the interpreter's.
    links: Vec<(PathBuf, String)>,
    /// The host's loader inside the chroot, to start a program with explicitly.
    loader: String,
}

/// The links (path in the tree, what it points to inside the chroot) that let the host's
/// programs, seen under `HOST_USR`, start in `tree`: the host's library directory (where its
/// loader really is, under `/usr`) at the same place in the tree, then the loader's path, as
/// the first missing component of it. `None` when the host has no dpkg-deb or no such loader,
/// or when the tree already has either path.
fn loader_links(root: &Path, tree: &Path, loader: &str) -> Option<Links> {
    let real = root.join(loader.trim_start_matches('/')).canonicalize().ok()?;
    let in_usr = real.strip_prefix(root.join("usr").canonicalize().ok()?).ok()?.to_owned();
    let libraries = in_usr.parent()?;
    if !root.join("usr/bin/dpkg-deb").is_file() {
        return None;
    }
    let library_link = tree.join("usr").join(libraries);
    if library_link.symlink_metadata().is_ok() || !library_link.parent()?.symlink_metadata().ok()?.is_dir() {
        return None;
    }
    let mut links = vec![(library_link, format!("{HOST_USR}/{}", libraries.display()))];
    // The loader's path, from the root down to its first component the tree lacks; earlier
    // components are followed as the kernel would, which a relative symlink (merged /usr's
    // `lib -> usr/lib`) allows from here too.
    let mut inside = PathBuf::from("/");
    let components: Vec<_> = Path::new(loader).components().skip(1).collect();
    for (index, component) in components.iter().enumerate() {
        inside.push(component);
        let path = tree.join(inside.strip_prefix("/").ok()?);
        // An absolute link in the tree would be followed on the host from here: give up.
        if fs::read_link(&path).is_ok_and(|to| to.is_absolute()) {
            return None;
        }
        if path.symlink_metadata().is_err() {
            let rest: PathBuf = components[index + 1..].iter().collect();
            let to = if rest.as_os_str().is_empty() {
                format!("/usr/{}", in_usr.display())
            } else if rest.as_os_str() == in_usr.file_name()? {
                format!("/usr/{}", libraries.display())
            } else {
                return None;
            };
            // The library link points into the bind; the loader's reaches it through that.
            links.push((path, to));
            return Some(Links { links, loader: format!("{HOST_USR}/{}", in_usr.display()) });
        }
        if index + 1 < components.len() && !path.is_dir() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host root laid out as Debian's amd64 one: merged /usr, `/lib64` a link into it.
    fn amd64_host() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("usr/lib/x86_64-linux-gnu");
        fs::create_dir_all(&lib).unwrap();
        fs::create_dir_all(root.path().join("usr/lib64")).unwrap();
        fs::write(lib.join("ld-linux-x86-64.so.2"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib64", root.path().join("lib64")).unwrap();
        std::os::unix::fs::symlink(
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            root.path().join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        root
    }

    /// A tree laid out as Debian's arm64 one: merged /usr, no `/lib64`.
    fn arm64_tree() -> tempfile::TempDir {
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(tree.path().join("usr/lib/aarch64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", tree.path().join("lib")).unwrap();
        tree
    }

    #[test]
    fn an_arm64_tree_gets_the_amd64_hosts_loader_and_libraries_as_links_into_the_bind() {
        let (host, tree) = (amd64_host(), arm64_tree());
        let interpreter = "/lib64/ld-linux-x86-64.so.2";
        assert_eq!(loader_links(host.path(), tree.path(), interpreter), None, "no dpkg-deb on the host");
        fs::create_dir_all(host.path().join("usr/bin")).unwrap();
        fs::write(host.path().join("usr/bin/dpkg-deb"), "").unwrap();
        let Links { links, loader: host_loader } = loader_links(host.path(), tree.path(), interpreter).unwrap();
        assert_eq!(host_loader, format!("{HOST_USR}/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        assert_eq!(
            links,
            [
                (tree.path().join("usr/lib/x86_64-linux-gnu"), format!("{HOST_USR}/lib/x86_64-linux-gnu")),
                (tree.path().join("lib64"), "/usr/lib/x86_64-linux-gnu".to_owned()),
            ]
        );
        // Made as said, the loader's path resolves, inside the tree, to the host's loader.
        for (link, to) in &links {
            std::os::unix::fs::symlink(to, link).unwrap();
        }
        assert_eq!(
            fs::read_link(tree.path().join("lib64")).unwrap().join("ld-linux-x86-64.so.2"),
            Path::new("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(loader_links(host.path(), tree.path(), interpreter), None, "the tree has them already");
        assert_eq!(loader_links(host.path(), tree.path(), "/lib/ld-linux-aarch64.so.1"), None, "no such loader");
        assert_eq!(loader("riscv64"), None);
    }

    #[test]
    fn a_loader_in_an_existing_directory_is_linked_itself() {
        // An arm64 host's loader is /lib/ld-linux-aarch64.so.1; an amd64 tree has /lib.
        let host = tempfile::tempdir().unwrap();
        let lib = host.path().join("usr/lib/aarch64-linux-gnu");
        fs::create_dir_all(&lib).unwrap();
        fs::create_dir_all(host.path().join("usr/bin")).unwrap();
        fs::write(host.path().join("usr/bin/dpkg-deb"), "").unwrap();
        fs::write(lib.join("ld-linux-aarch64.so.1"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", host.path().join("lib")).unwrap();
        std::os::unix::fs::symlink(
            "aarch64-linux-gnu/ld-linux-aarch64.so.1",
            host.path().join("usr/lib/ld-linux-aarch64.so.1"),
        )
        .unwrap();
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir_all(tree.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::os::unix::fs::symlink("usr/lib", tree.path().join("lib")).unwrap();
        let links = loader_links(host.path(), tree.path(), "/lib/ld-linux-aarch64.so.1").unwrap().links;
        assert_eq!(
            links[1],
            (
                tree.path().join("lib/ld-linux-aarch64.so.1"),
                "/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1".to_owned()
            )
        );
    }

    const LOADER: &str = "/tmp/mesos-image-host-usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

    /// A dpkg status file holding `packages` (name, version), all installed.
    fn status(root: &Path, packages: &[(&str, &str)]) {
        let text: String = packages
            .iter()
            .map(|(name, version)| format!("Package: {name}\nStatus: install ok installed\nVersion: {version}\n\n"))
            .collect();
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::write(root.join(dpkg_status::STATUS_FILE), text).unwrap();
    }

    #[test]
    fn scripts_are_wrapped_and_tools_stand_in_only_at_the_trees_versions_and_all_is_removed() {
        let (host, tree) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        status(host.path(), &[("dash", "0.5.12-2"), ("coreutils", "9.1-1"), ("sed", "4.9-1"), ("kmod", "30-1")]);
        status(tree.path(), &[("dash", "0.5.12-2"), ("coreutils", "9.1-1"), ("sed", "4.8-1")]);
        // The host's /usr, and as the bind shows it; depmod a link to kmod, as Debian has it.
        let host_usr = in_tree(tree.path(), HOST_USR);
        for usr in [host.path().join("usr"), host_usr.clone()] {
            for program in ["bin/dash", "bin/dpkg-deb", "bin/cp", "bin/sed", "bin/kmod"] {
                fs::create_dir_all(usr.join(program).parent().unwrap()).unwrap();
                fs::write(usr.join(program), "").unwrap();
            }
            fs::create_dir_all(usr.join("sbin")).unwrap();
            std::os::unix::fs::symlink("../bin/kmod", usr.join("sbin/depmod")).unwrap();
        }
        let mut made = Made::new(host.path().to_owned(), tree.path().to_owned(), LOADER.to_owned());
        fs::create_dir_all(tree.path().join("usr/lib")).unwrap();
        let links = [
            (tree.path().join("usr/lib/x86_64-linux-gnu"), format!("{HOST_USR}/lib/x86_64-linux-gnu")),
            (tree.path().join("lib64"), "/usr/lib/x86_64-linux-gnu".to_owned()),
        ];
        made.prepare(&links).unwrap();
        let (native, wrappers) = (in_tree(tree.path(), NATIVE_DIR), in_tree(tree.path(), WRAPPERS_DIR));
        assert_eq!(fs::read_link(native.join("dpkg-deb")).unwrap(), Path::new(HOST_USR).join("bin/dpkg-deb"));
        let wrapper = fs::read_to_string(wrappers.join("mkinitramfs")).unwrap();
        assert!(wrapper.starts_with(&format!("#!{LOADER} {HOST_USR}/bin/dash\n")), "{wrapper}");
        assert!(
            wrapper.ends_with(&format!(
                "\n{LOADER} {HOST_USR}/bin/dash -c '. {FUNCTIONS}; . \"$0\"' /usr/sbin/mkinitramfs \"$@\"\n"
            )),
            "{wrapper}"
        );
        assert!(wrappers.join("update-ca-certificates").is_file());
        let functions = || fs::read_to_string(in_tree(tree.path(), FUNCTIONS)).unwrap();
        let cp = format!("\ncp() {{ {LOADER} --argv0 cp {HOST_USR}/bin/cp \"$@\"; }}\n");
        assert!(functions().contains(&cp), "{}", functions());
        assert_eq!(fs::read_link(native.join("cp")).unwrap(), Path::new(HOST_USR).join("bin/cp"));
        assert!(native.join("sed").symlink_metadata().is_err());
        assert!(!functions().contains("sed()"), "the tree's sed is another version");
        assert!(!functions().contains("depmod()"), "kmod is not in the tree yet");
        // The transaction brings kmod at the host's version: depmod joins for the initramfs.
        status(tree.path(), &[("dash", "0.5.12-2"), ("coreutils", "9.1-1"), ("sed", "4.8-1"), ("kmod", "30-1")]);
        made.add_stand_ins().unwrap();
        // The file kmod itself, told its name: the link's own target would be the tree's kmod.
        let depmod = format!("\ndepmod() {{ {LOADER} --argv0 depmod {HOST_USR}/bin/kmod \"$@\"; }}\n");
        assert!(functions().contains(&depmod), "{}", functions());
        assert_eq!(fs::read_link(native.join("depmod")).unwrap(), Path::new(HOST_USR).join("bin/kmod"));
        // For the initramfs the interpreter's link goes (mkinitramfs would copy a /lib64).
        made.remove_interpreter().unwrap();
        assert!(links[1].0.symlink_metadata().is_err(), "no /lib64 while mkinitramfs runs");
        assert!(links[0].0.symlink_metadata().is_ok());
        made.remove().unwrap();
        assert!(native.symlink_metadata().is_err() && links[0].0.symlink_metadata().is_err());
        assert!(host_usr.join("bin/cp").is_file(), "nothing of the host's is touched");
    }

    #[test]
    fn no_script_is_wrapped_when_the_hosts_dash_is_another_version() {
        let (host, tree) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        status(host.path(), &[("dash", "0.5.12-6")]);
        status(tree.path(), &[("dash", "0.5.12-2")]);
        fs::create_dir_all(in_tree(tree.path(), HOST_USR).join("bin")).unwrap();
        fs::write(in_tree(tree.path(), HOST_USR).join("bin/dash"), "").unwrap();
        let mut made = Made::new(host.path().to_owned(), tree.path().to_owned(), LOADER.to_owned());
        made.prepare(&[]).unwrap();
        let (native, wrappers) = (in_tree(tree.path(), NATIVE_DIR), in_tree(tree.path(), WRAPPERS_DIR));
        assert!(native.join("dpkg-deb").symlink_metadata().is_ok(), "dpkg-deb stands in whatever its version");
        assert!(!wrappers.join("mkinitramfs").exists() && !wrappers.join("update-ca-certificates").exists());
    }

    #[test]
    fn a_host_program_stands_in_only_for_the_very_same_version() {
        let deb = |name: &str, version: &str| InstalledDeb {
            name: name.to_owned(),
            version: version.to_owned(),
            architecture: String::new(),
            source: None,
        };
        let host = [deb("coreutils", "9.1-1"), deb("sed", "4.9-1")];
        let tree = [deb("coreutils", "9.1-1"), deb("sed", "4.9-2"), deb("kmod", "30+20221128-1")];
        assert!(same_version(&host, &tree, "coreutils"));
        assert!(!same_version(&host, &tree, "sed"), "another build of sed");
        assert!(!same_version(&host, &tree, "kmod"), "not on the host");
        assert!(!same_version(&host, &tree, "zstd"), "in neither");
    }
}
