"""Training: recipes, the stage trainer, the frozen-embedding cache, checkpoints."""

from geobind.train.recipe import Recipe, SideRecipe, StageRecipe, load_recipe
from geobind.train.run import train, train_recipe

__all__ = ["Recipe", "SideRecipe", "StageRecipe", "load_recipe", "train", "train_recipe"]
