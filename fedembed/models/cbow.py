"""Continuous bag of words with negative sampling."""
from fedembed.models import FAMILIES
from fedembed.models.word2vec import Word2VecFamily


@FAMILIES.register("cbow")
class CBOW(Word2VecFamily):
    sg = False
