"""Teacher caches: the teacher's logits for every training view of a run, computed once (``hfkd cache-teacher``) and
replayed by any logit method, student and seed that would see the same views (``teacher_cache`` in a recipe)."""

from .cached_teacher import CachedTeacher
from .matching import epochs_needed, open_teacher_cache, require_logit_method
from .record import CacheRecord, read_record
from .topk import rebuild_logits, topk_logits

__all__ = [
    "CacheRecord",
    "CachedTeacher",
    "epochs_needed",
    "open_teacher_cache",
    "read_record",
    "rebuild_logits",
    "require_logit_method",
    "topk_logits",
]
