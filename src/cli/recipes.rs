//! `mesos-image recipes`: list and show recipes.

use clap::{Args, Subcommand};

pub use super::args::search::RecipesDirArgs;
use super::args::GlobalOpts;
use crate::recipe::Recipe;

#[derive(Debug, Args)]
pub struct RecipesArgs {
    #[command(subcommand)]
    pub command: RecipesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RecipesCommand {
    /// List recipes: name, distro and release, description.
    List(RecipesDirArgs),
    /// Print a recipe (as YAML, every default filled in), found by name or path.
    Show {
        /// Recipe name (looked up as NAME.yaml) or path to a recipe file.
        name: String,
        #[command(flatten)]
        dirs: RecipesDirArgs,
    },
}

pub fn run(args: RecipesArgs, _global: &GlobalOpts) -> anyhow::Result<()> {
    match args.command {
        RecipesCommand::List(dirs) => list(&dirs),
        RecipesCommand::Show { name, dirs } => show(&name, &dirs),
    }
}

fn list(dirs: &RecipesDirArgs) -> anyhow::Result<()> {
    let recipes = Recipe::list(&dirs.search_path())?;
    let width = recipes.iter().map(|(r, _)| r.name.len()).max().unwrap_or(0);
    for (recipe, _path) in recipes {
        let target = format!("{} {} {}", recipe.distro, recipe.release, recipe.arch);
        let line =
            format!("{:width$}  {:24}  {}", recipe.name, target, recipe.description.lines().next().unwrap_or(""));
        println!("{}", line.trim_end());
    }
    Ok(())
}

fn show(name: &str, dirs: &RecipesDirArgs) -> anyhow::Result<()> {
    let (recipe, path) = Recipe::find(name, &dirs.search_path())?;
    println!("# {}", path.display());
    // Through the redaction layer like every other output: the environment's secrets by value
    // (YAML has no `NAME=value` to mask by name), a mirror's password by the URL rule.
    crate::redact::register_env(recipe.environment.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    print!("{}", crate::redact::text(&serde_yaml_ng::to_string(&recipe)?));
    Ok(())
}
