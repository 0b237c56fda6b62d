"""Backbones (issues #4, #12): the Backbone interface, the MM-DiT, and Wan through diffusers. Not built yet."""
