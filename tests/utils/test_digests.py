import hashlib

import torch

from mmseg_saot.utils.digests import named_tensors_sha256, update_digest


def test_named_tensors_sha256_depends_on_names_values_dtypes_not_order():
    a, b = torch.arange(6.).view(2, 3), torch.ones(2)
    reference = named_tensors_sha256([('a', a), ('b', b)])
    assert len(reference) == 32
    assert named_tensors_sha256([('b', b), ('a', a)]) == reference  # name order
    for changed in ([('a', a), ('c', b)], [('a', a + 1), ('b', b)],
                    [('a', a.double()), ('b', b)], [('a', a.view(3, 2)), ('b', b)]):
        assert named_tensors_sha256(changed) != reference


def test_update_digest_reads_shape_dtype_and_values():
    def key(tensor):
        digest = hashlib.blake2b(digest_size=8)
        update_digest(digest, tensor)
        return digest.hexdigest()
    image = torch.zeros(3, 4, 5, dtype=torch.uint8)
    assert key(image) == key(image.clone())
    assert key(image) != key(image.view(3, 5, 4))
    assert key(image) != key(image.float())
    changed = image.clone()
    changed[0, 0, 0] = 1
    assert key(image) != key(changed)
