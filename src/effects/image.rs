//! Base images: builds a recipe from `images/` (embedded in the binary) and caches the result by the
//! hash of the recipe's inputs, so a second build of the same recipe is instant.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// A recipe: its files, embedded at compile time so the binary builds images anywhere.
pub struct Recipe {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

pub const RECIPES: &[Recipe] = &[Recipe {
    name: "debian-12",
    files: &[
        ("recipe.toml", include_str!("../../images/debian-12/recipe.toml")),
        ("build.sh", include_str!("../../images/debian-12/build.sh")),
    ],
}];

/// Files an image build leaves beside the image.
pub const SIDECARS: &[&str] = &["dpkg-status", "manifest", "sha256"];

pub fn recipe(name: &str) -> Result<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).with_context(|| {
        let known: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        format!("no image recipe `{name}`; known: {}", known.join(", "))
    })
}

/// The content-addressed cache key: every input file, and kiln's version.
pub fn cache_key(recipe: &Recipe) -> String {
    let mut hasher = Sha256::new();
    hasher.update(env!("CARGO_PKG_VERSION"));
    for (name, body) in recipe.files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update((body.len() as u64).to_le_bytes());
        hasher.update(body);
    }
    crate::encoding::hex(&hasher.finalize()[..12])
}

/// Base images built from recipes, under kiln's cache directory.
pub fn cache_dir() -> PathBuf {
    super::cache::dir().join("images")
}

fn sidecar(image: &Path, extension: &str) -> PathBuf {
    image.with_extension(extension)
}

/// Hard-links (same file system) or copies `from` to `to`, through a `.partial` name.
fn place(from: &Path, to: &Path) -> Result<()> {
    let partial = to.with_extension(format!("{}.partial", to.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let _ = std::fs::remove_file(&partial);
    if std::fs::hard_link(from, &partial).is_err() {
        std::fs::copy(from, &partial)
            .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    }
    std::fs::rename(&partial, to).with_context(|| format!("renaming to {}", to.display()))
}

/// Builds (or takes from the cache) the recipe's image and places it at `output` with its sidecars.
/// Returns whether the cache answered.
pub fn build(name: &str, output: &Path, force: bool) -> Result<bool> {
    let recipe = recipe(name)?;
    let key = cache_key(recipe);
    let cached = cache_dir().join(format!("{name}-{key}")).join("base.qcow2");
    let hit = cached.is_file() && SIDECARS.iter().all(|s| sidecar(&cached, s).is_file()) && !force;
    if !hit {
        let work = tempfile::Builder::new().prefix("kiln-image-").tempdir_in(std::env::temp_dir())?;
        for (file, body) in recipe.files {
            std::fs::write(work.path().join(file), body)?;
        }
        let dir = cached.parent().context("cache path")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!("kiln: building image {name} (recipe {key}); this takes a few minutes");
        let status = Command::new("bash")
            .arg(work.path().join("build.sh"))
            .arg(&cached)
            .arg("--workdir")
            .arg(work.path().join("build"))
            .status()
            .context("running the image recipe (bash)")?;
        if !status.success() {
            let _ = std::fs::remove_file(&cached);
            bail!("the {name} image recipe failed (exit {:?}); see its output above", status.code());
        }
    }
    place(&cached, output)?;
    for extension in SIDECARS {
        place(&sidecar(&cached, extension), &sidecar(output, extension))?;
    }
    Ok(hit)
}
