//! The on-disk cache of precompiled plugins.
//!
//! Compiling a component takes 13–200 ms; loading a precompiled artifact takes well under a
//! millisecond. Artifacts live in `<data-dir>/cache/components/<compat>/<sha256>.cwasm`, where
//! `<compat>` digests [`wasmtime::Engine::precompile_compatibility_hash`] (engine version and
//! settings) and `<sha256>` is the component's digest.
//!
//! Loading an artifact runs native code, so only artifacts this host wrote are ever loaded:
//! each file starts with an HMAC-SHA256 of its contents under a key kept in
//! `<data-dir>/cache/key` (mode 0600, made at first use). A file that fails the check (planted,
//! truncated, written by another host) is ignored and replaced by a fresh compilation.

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

type HmacSha256 = Hmac<Sha256>;
const MAC_LEN: usize = 32;

/// Where a component came from on load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A verified artifact was loaded.
    Hit,
    /// The component was compiled (and the artifact written).
    Compiled,
}

/// The precompiled-artifact cache of one engine.
#[derive(Clone, Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
}

impl ArtifactCache {
    /// Opens (creating) the cache under `cache_root` for `engine`.
    pub fn open(cache_root: &Path, engine: &Engine) -> Result<ArtifactCache> {
        let mut hasher = crate::digest::Sha256Hasher::default();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let dir = cache_root.join("components").join(&hasher.hex()[..16]);
        create_private_dir(&dir)?;
        let key = load_or_create_key(&cache_root.join("key"))?;
        Ok(ArtifactCache { dir, key })
    }

    /// The directory artifacts of this engine configuration go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the component with digest `sha256` from the cache, or compiles `wasm` and caches it.
    pub fn load_or_compile(&self, engine: &Engine, sha256: &str, wasm: &[u8]) -> Result<(Component, CacheOutcome)> {
        let path = self.dir.join(format!("{sha256}.cwasm"));
        if let Some(component) = self.load(engine, &path)? {
            return Ok((component, CacheOutcome::Hit));
        }
        let artifact =
            engine.precompile_component(wasm).map_err(anyhow::Error::from).context("compiling the component")?;
        self.store(&path, &artifact)?;
        // SAFETY: the artifact was produced by `precompile_component` of this very engine.
        let component = unsafe { Component::deserialize(engine, &artifact) }?;
        drop(artifact);
        release_freed_memory();
        Ok((component, CacheOutcome::Compiled))
    }

    fn load(&self, engine: &Engine, path: &Path) -> Result<Option<Component>> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if bytes.len() <= MAC_LEN {
            return Ok(None);
        }
        let (mac, artifact) = bytes.split_at(MAC_LEN);
        let mut check = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        check.update(artifact);
        if check.verify_slice(mac).is_err() {
            tracing::warn!(path = %path.display(), "ignoring a cached artifact this host did not write");
            return Ok(None);
        }
        // SAFETY: the HMAC proves this host wrote these bytes from `precompile_component`, and
        // the directory is keyed by the engine's compatibility hash.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Ok(Some(component)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring an unusable cached artifact");
                Ok(None)
            }
        }
    }

    fn store(&self, path: &Path, artifact: &[u8]) -> Result<()> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("any key length works");
        mac.update(artifact);
        let tag = mac.finalize().into_bytes();
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(&tag)?;
        file.write_all(artifact)?;
        file.sync_all()?;
        fs::rename(&temp, path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }
}

/// Hands the heap memory freed since the last call back to the kernel.
///
/// Compiling a component allocates tens of MiB in the compiler and frees them at the end, but
/// glibc's allocator keeps freed memory in its per-thread arenas: a daemon that compiled its
/// plugins at start (a fresh data directory, or a new engine version) stayed about 25 MiB larger
/// for its whole life than one that loaded them from this cache. Other allocators and platforms
/// need nothing here.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim takes the allocator's own locks and only returns free pages
        // to the kernel; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    if let Ok(bytes) = fs::read(path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key)
}
