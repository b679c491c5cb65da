"""Skip-gram with negative sampling (Mikolov et al. 2013)."""
from fedembed.models import FAMILIES
from fedembed.models.word2vec import Word2VecFamily


@FAMILIES.register("sgns")
class SkipGram(Word2VecFamily):
    sg = True
