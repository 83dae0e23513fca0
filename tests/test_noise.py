import numpy as np

from srexport.runtime.noise import normal_field, philox4x32


def test_philox_matches_random123_known_answers():
    # Known-answer vectors of philox4x32_10 from the Random123 distribution (kat_vectors).
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for counter, key, expected in cases:
        got = philox4x32(tuple(np.array([c], np.uint32) for c in counter), key)
        assert tuple(int(g[0]) for g in got) == expected


def test_field_is_a_function_of_position_not_of_the_crop():
    whole = normal_field(7, 0, -8, -8, 64, 80)
    crop = normal_field(7, 0, 5, 11, 20, 30)
    np.testing.assert_array_equal(crop, whole[13:33, 19:49])


def test_field_is_standard_normal_and_streams_differ():
    a = normal_field(1, 0, 0, 0, 256, 256)
    b = normal_field(1, 1, 0, 0, 256, 256)
    c = normal_field(2, 0, 0, 0, 256, 256)
    assert abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01
    assert abs(np.mean(a * b)) < 0.01 and abs(np.mean(a * c)) < 0.01
    # Normal tails: about 4.55% beyond 2 sigma.
    assert abs(np.mean(np.abs(a) > 2) - 0.0455) < 0.003
