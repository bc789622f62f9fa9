//! Where elements and recipes are looked up: the options every command that reads them shares.

use std::path::PathBuf;

use clap::Args;

use crate::element::{self, ElementLibrary};
use crate::settings::{ELEMENTS_PATH, RECIPES_DIR};

/// The element search path options shared by every command that reads elements.
#[derive(Debug, Clone, Default, Args)]
pub struct ElementsPathArgs {
    #[arg(long = ELEMENTS_PATH.flag, help = ELEMENTS_PATH.help_text(), value_name = "DIR")]
    pub elements_path: Vec<PathBuf>,
}

impl ElementsPathArgs {
    /// `--elements-path` entries, then `$ELEMENTS_PATH`, then the built-in `elements/`.
    pub fn search_path(&self) -> Vec<PathBuf> {
        let env_value = std::env::var("ELEMENTS_PATH").ok();
        element::search_path(&self.elements_path, env_value.as_deref(), &crate::paths::builtin_elements_dir())
    }

    pub fn scan(&self) -> anyhow::Result<ElementLibrary> {
        Ok(ElementLibrary::scan(&self.search_path())?)
    }
}

/// The recipe search path options.
#[derive(Debug, Clone, Default, Args)]
pub struct RecipesDirArgs {
    #[arg(long = RECIPES_DIR.flag, help = RECIPES_DIR.help_text(), value_name = "DIR")]
    pub recipes_dir: Vec<PathBuf>,
}

impl RecipesDirArgs {
    /// `--recipes-dir` entries, then the built-in `recipes/`.
    pub fn search_path(&self) -> Vec<PathBuf> {
        let mut dirs = self.recipes_dir.clone();
        dirs.push(crate::paths::builtin_recipes_dir());
        dirs
    }
}
