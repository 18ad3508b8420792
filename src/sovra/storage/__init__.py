"""Weights by repository@revision: fetched once into one store, shared by every replica."""
