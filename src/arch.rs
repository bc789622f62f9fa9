//! Architecture names: Debian's (`amd64`) are ours; the kernel's (`x86_64`), which DIB users
//! and elements also write, are aliases. The one table both directions read.

/// Debian architectures the root stage can build (mmdebstrap/debootstrap `--arch`).
pub const KNOWN: &[&str] = &["amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "riscv64"];

/// (Debian name, kernel names); the first kernel name is the canonical one.
const ALIASES: &[(&str, &[&str])] =
    &[("amd64", &["x86_64"]), ("arm64", &["aarch64"]), ("i386", &["i686", "i586", "i486"]), ("ppc64el", &["ppc64le"])];

/// The Debian name of `arch` (a kernel name maps to Debian's; anything else is kept).
pub fn normalize(arch: &str) -> String {
    ALIASES.iter().find(|(_, kernel)| kernel.contains(&arch)).map_or(arch, |(debian, _)| debian).to_owned()
}

/// The kernel's name for a Debian architecture (`amd64` -> `x86_64`); itself when it has none.
pub fn kernel_name(arch: &str) -> &str {
    ALIASES.iter().find(|(debian, _)| *debian == arch).map_or(arch, |(_, kernel)| kernel[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_map_to_debian_and_back() {
        assert_eq!(normalize("x86_64"), "amd64");
        assert_eq!(normalize("aarch64"), "arm64");
        assert_eq!(normalize("i586"), "i386");
        assert_eq!(normalize("ppc64le"), "ppc64el");
        assert_eq!(normalize("s390x"), "s390x");
        assert_eq!(kernel_name("amd64"), "x86_64");
        assert_eq!(kernel_name("i386"), "i686");
        assert_eq!(kernel_name("riscv64"), "riscv64");
    }

    #[test]
    fn every_alias_names_a_known_architecture() {
        for (debian, _) in ALIASES {
            assert!(KNOWN.contains(debian), "{debian}");
            assert_eq!(normalize(kernel_name(debian)), *debian);
        }
    }
}
