//! An image in Glance against the local file and the job: which clash, which are identical,
//! whether what Glance stored is what was read.

use super::glance::Image;
use super::job::{UploadError, UploadJob};
use super::stream::Digests;

/// Which existing images a clash means: none, or (with `--replace`) ours of that name.
pub fn images_to_replace(
    name: &str,
    existing: &[Image],
    replace: bool,
    project: Option<&str>,
) -> Result<Vec<String>, UploadError> {
    let live: Vec<&Image> = existing.iter().filter(|i| is_live(i)).collect();
    if live.is_empty() {
        return Ok(Vec::new());
    }
    if !replace {
        let ids = live.iter().map(|i| i.id()).collect::<Vec<_>>().join(", ");
        return Err(UploadError::NameTaken { name: name.to_owned(), ids });
    }
    if let Some(foreign) = live.iter().find(|i| i.str("owner") != project) {
        return Err(UploadError::NotOurs {
            id: foreign.id().to_owned(),
            name: name.to_owned(),
            owner: foreign.str("owner").unwrap_or("unknown").to_owned(),
        });
    }
    Ok(live.iter().map(|i| i.id().to_owned()).collect())
}

pub(super) fn is_live(image: &Image) -> bool {
    !matches!(image.status(), "deleted" | "pending_delete")
}

/// The property openstacksdk records the sha256 of the uploaded data in.
pub const SHA256_PROPERTY: &str = "owner_specified.openstack.sha256";
/// The property openstacksdk records the md5 of the uploaded data in.
pub const MD5_PROPERTY: &str = "owner_specified.openstack.md5";

/// The hash `image` carries that can be compared with the local file: (what, stored, local).
fn comparable_hash<'a>(image: &'a Image, local: &'a Digests) -> Option<(&'static str, &'a str, &'a str)> {
    if let Some(sha256) = image.str(SHA256_PROPERTY) {
        return Some(("sha256", sha256, &local.sha256));
    }
    match (image.str("os_hash_algo"), image.str("os_hash_value")) {
        (Some("sha512"), Some(value)) => Some(("sha512", value, &local.sha512)),
        (Some("sha256"), Some(value)) => Some(("sha256", value, &local.sha256)),
        _ => None,
    }
}

/// Whether `image` holds exactly the local data (active, same size, same hash).
pub fn is_identical(image: &Image, local: &Digests) -> bool {
    image.status() == "active"
        && image.size() == Some(local.bytes)
        && comparable_hash(image, local).is_some_and(|(_, stored, local)| stored == local)
}

/// Require the stored size and hashes to match what was read from disk, or what the image's
/// manifest records when the data was sent without hashing it.
pub(super) fn verify(image: &Image, digests: &Digests, job: &UploadJob) -> Result<(), UploadError> {
    let (id, path) = (image.id().to_owned(), job.image.clone());
    let mismatch = |stored: String, local: String| match &job.recorded {
        Some(recorded) => UploadError::NotAsManifest {
            id: id.clone(),
            path: path.clone(),
            manifest: recorded.manifest.clone(),
            stored,
            recorded: local,
        },
        None => UploadError::Mismatch { id: id.clone(), path: path.clone(), stored, local },
    };
    if image.size() != Some(digests.bytes) {
        let stored = image.size().map_or("no size".to_owned(), |s| format!("{s} bytes"));
        return Err(mismatch(stored, format!("{} bytes", digests.bytes)));
    }
    match (image.str("os_hash_algo"), image.str("os_hash_value")) {
        (Some("sha512"), Some(value)) if value != digests.sha512 => {
            return Err(mismatch(format!("sha512 {value}"), format!("sha512 {}", digests.sha512)))
        }
        (Some("sha256"), Some(value)) if value != digests.sha256 => {
            return Err(mismatch(format!("sha256 {value}"), format!("sha256 {}", digests.sha256)))
        }
        (Some(algo), _) if algo != "sha512" && algo != "sha256" => {
            tracing::debug!("Glance hashes with {algo}; comparing the md5 checksum only");
        }
        _ => {}
    }
    if let Some(checksum) = image.str("checksum").filter(|c| *c != digests.md5) {
        return Err(mismatch(format!("md5 {checksum}"), format!("md5 {}", digests.md5)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::job::tests::job;
    use serde_json::json;

    fn image(id: &str, owner: &str, status: &str) -> Image {
        Image(json!({"id": id, "owner": owner, "status": status}).as_object().unwrap().clone())
    }

    #[test]
    fn a_clash_is_refused_without_replace() {
        let existing = vec![image("a", "p1", "active")];
        let err = images_to_replace("u", &existing, false, Some("p1")).unwrap_err().to_string();
        assert!(err.contains("`u`") && err.contains("a") && err.contains("--replace"), "{err}");
        assert_eq!(images_to_replace("u", &[], false, Some("p1")).unwrap(), Vec::<String>::new());
        assert!(images_to_replace("u", &[image("d", "p1", "deleted")], false, Some("p1")).unwrap().is_empty());
    }

    #[test]
    fn replace_takes_only_our_own_images() {
        let ours = vec![image("a", "p1", "active"), image("b", "p1", "queued")];
        assert_eq!(images_to_replace("u", &ours, true, Some("p1")).unwrap(), vec!["a", "b"]);
        let mixed = vec![image("a", "p1", "active"), image("c", "p2", "active")];
        let err = images_to_replace("u", &mixed, true, Some("p1")).unwrap_err().to_string();
        assert!(err.contains("image c") && err.contains("p2"), "{err}");
    }

    fn digests() -> Digests {
        Digests { bytes: 3, sha512: "s".into(), md5: "m".into(), sha256: "h".into() }
    }

    fn stored(value: serde_json::Value) -> Image {
        Image(value.as_object().unwrap().clone())
    }

    #[test]
    fn verification_compares_size_and_hashes() {
        let digests = digests();
        let image = |size: u64, sha: &str, md5: &str| {
            stored(json!({"id": "i", "size": size, "os_hash_algo": "sha512", "os_hash_value": sha, "checksum": md5}))
        };
        assert!(verify(&image(3, "s", "m"), &digests, &job()).is_ok());
        assert!(verify(&image(4, "s", "m"), &digests, &job()).unwrap_err().to_string().contains("4 bytes"));
        assert!(verify(&image(3, "t", "m"), &digests, &job()).unwrap_err().to_string().contains("sha512 t"));
        assert!(verify(&image(3, "s", "n"), &digests, &job()).unwrap_err().to_string().contains("md5 n"));
    }

    #[test]
    fn a_mismatch_with_recorded_digests_names_the_manifest() {
        let digests = digests();
        let mut job = job();
        let manifest = std::path::PathBuf::from("x.qcow2.manifest.json");
        job.recorded = Some(crate::upload::recorded::Recorded { digests: digests.clone(), manifest });
        let image =
            stored(json!({"id": "i", "size": 3, "os_hash_algo": "sha512", "os_hash_value": "t", "checksum": "m"}));
        let err = verify(&image, &digests, &job).unwrap_err().to_string();
        assert_eq!(
            err,
            "x.qcow2 does not match its manifest (image i: Glance stored sha512 t, x.qcow2.manifest.json records sha512 s)"
        );
    }

    #[test]
    fn identical_means_active_same_size_and_same_hash() {
        let local = digests();
        let by_glance = stored(json!({"status": "active", "size": 3, "os_hash_algo": "sha512", "os_hash_value": "s"}));
        assert!(is_identical(&by_glance, &local));
        let by_sdk = stored(json!({"status": "active", "size": 3, SHA256_PROPERTY: "h", "os_hash_algo": "md5"}));
        assert!(is_identical(&by_sdk, &local));
        let other = stored(json!({"status": "active", "size": 3, SHA256_PROPERTY: "x"}));
        assert!(!is_identical(&other, &local));
        let queued = stored(json!({"status": "queued", "size": 3, "os_hash_algo": "sha512", "os_hash_value": "s"}));
        assert!(!is_identical(&queued, &local));
        let no_hash = stored(json!({"status": "active", "size": 3}));
        assert!(!is_identical(&no_hash, &local));
    }
}
