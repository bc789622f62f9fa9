//! `mesos-image cache`: inspect and prune the stage and package caches.

pub use super::args::cache::{CacheArgs, CacheCommand};
use super::args::GlobalOpts;
use crate::cache::{self, StageCache};
use crate::paths;

pub fn run(args: CacheArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    super::preflight::cache(&args)?;
    let cache = StageCache::open(&args.cache_dir.unwrap_or_else(paths::default_cache_dir))?;
    match args.command {
        CacheCommand::List => list(&cache),
        CacheCommand::Prune { older_than, all, apt } => prune(&cache, if all { 0 } else { older_than }, all || apt),
    }
}

fn list(cache: &StageCache) -> anyhow::Result<()> {
    let entries = cache.list()?;
    println!("{:<14} {:<8} {:>10} {:>9}  BUILD", "KEY", "STAGE", "SIZE", "AGE");
    let now = crate::clock::now();
    for entry in &entries {
        let age_days = now.saturating_sub(entry.created) as f64 / 86_400.0;
        println!(
            "{:<14} {:<8} {:>10} {:>8.1}d  {}",
            entry.key.short(),
            entry.stage.name(),
            human_size(entry.size),
            age_days,
            entry.label
        );
    }
    println!("apt package cache: {} in {}", human_size(cache.apt_size()), cache.apt_archives().display());
    Ok(())
}

fn prune(cache: &StageCache, older_than_days: u64, apt: bool) -> anyhow::Result<()> {
    let cutoff = crate::clock::now().saturating_sub(older_than_days.saturating_mul(86_400));
    let mut removed = 0u64;
    let mut busy = 0u64;
    let mut freed = 0u64;
    let entries = cache.list()?;
    // Keys come from the store's validated file names, never from a record's contents.
    let doomed: Vec<_> = if older_than_days == 0 {
        cache.keys()?
    } else {
        entries.iter().filter(|entry| cache::last_used(cache, entry) < cutoff).map(|entry| entry.key.clone()).collect()
    };
    for key in doomed {
        if cache.remove_unless_busy(&key)? {
            removed += 1;
            freed += entries.iter().filter(|entry| entry.key == key).map(|entry| entry.size).sum::<u64>();
        } else {
            busy += 1;
        }
    }
    if apt {
        freed += cache.apt_size();
        cache.clear_apt()?;
    }
    println!("removed {removed} entries, freed {}", human_size(freed));
    if busy > 0 {
        println!("kept {busy} entries a running build is using");
    }
    Ok(())
}

/// `1.4 GiB`-style sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
