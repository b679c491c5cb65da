from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Privacy(_message.Message):
    __slots__ = ("is_private", "epsilon", "delta", "unit", "mechanism", "guarantee")
    IS_PRIVATE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    is_private: bool
    epsilon: float
    delta: float
    unit: str
    mechanism: str
    guarantee: str
    def __init__(self, is_private: _Optional[bool] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., unit: _Optional[str] = ..., mechanism: _Optional[str] = ..., guarantee: _Optional[str] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("model", "dimension", "vocab_size", "privacy", "run_name", "rounds", "index", "oov_vectors", "max_batch", "max_message_bytes", "embeds_text")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    RUN_NAME_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OOV_VECTORS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EMBEDS_TEXT_FIELD_NUMBER: _ClassVar[int]
    model: str
    dimension: int
    vocab_size: int
    privacy: Privacy
    run_name: str
    rounds: int
    index: str
    oov_vectors: bool
    max_batch: int
    max_message_bytes: int
    embeds_text: bool
    def __init__(self, model: _Optional[str] = ..., dimension: _Optional[int] = ..., vocab_size: _Optional[int] = ..., privacy: _Optional[_Union[Privacy, _Mapping]] = ..., run_name: _Optional[str] = ..., rounds: _Optional[int] = ..., index: _Optional[str] = ..., oov_vectors: _Optional[bool] = ..., max_batch: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., embeds_text: _Optional[bool] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class GetVectorsRequest(_message.Message):
    __slots__ = ("words",)
    WORDS_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, words: _Optional[_Iterable[str]] = ...) -> None: ...

class GetVectorsResponse(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...

class WordPair(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ...) -> None: ...

class SimilarityRequest(_message.Message):
    __slots__ = ("pairs",)
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[WordPair]
    def __init__(self, pairs: _Optional[_Iterable[_Union[WordPair, _Mapping]]] = ...) -> None: ...

class SimilarityResponse(_message.Message):
    __slots__ = ("cosine",)
    COSINE_FIELD_NUMBER: _ClassVar[int]
    cosine: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, cosine: _Optional[_Iterable[float]] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("word", "score")
    WORD_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    word: str
    score: float
    def __init__(self, word: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class NearestNeighborsRequest(_message.Message):
    __slots__ = ("word", "vector", "k")
    WORD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    word: str
    vector: Vector
    k: int
    def __init__(self, word: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., k: _Optional[int] = ...) -> None: ...

class NearestNeighborsResponse(_message.Message):
    __slots__ = ("neighbors",)
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class AnalogyRequest(_message.Message):
    __slots__ = ("a", "b", "c", "k")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    c: str
    k: int
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., c: _Optional[str] = ..., k: _Optional[int] = ...) -> None: ...

class AnalogyResponse(_message.Message):
    __slots__ = ("answers",)
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, answers: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class EmbedTextRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedTextResponse(_message.Message):
    __slots__ = ("vectors",)
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...
