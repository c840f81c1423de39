"""harness.search.exact.exact_top_k against a brute-force full score matrix, with each selection (FAISS's
heaps and torch's topk-and-merge: the `selection` fixture runs every test with both).

Most data is dyadic (multiples of 1/64) or small integers: every fp32 score is then exact, whatever
the summation order, so results can be compared for exact equality -- ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.search.exact import TopK, exact_top_k
from harness.vocabulary.errors import HarnessError


@pytest.fixture(autouse=True, params=["faiss", "torch"])
def selection(request, monkeypatch):
    """Every exact_top_k call of the test that leaves `selection` to "auto" selects with FAISS's heaps, then
    with torch."""
    from harness.search import exact

    if request.param == "faiss":
        pytest.importorskip("faiss")
    chosen = exact._heap_selection
    monkeypatch.setattr(exact, "_heap_selection", lambda asked, dev: chosen(
        request.param if asked == "auto" and dev.type == "cpu" else asked, dev))
    return request.param


def score_matrix(queries: np.ndarray, corpus: np.ndarray, *, cosine: bool = False) -> np.ndarray:
    q, c = queries.astype(np.float64), corpus.astype(np.float64)
    if cosine:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return q @ c.T


def brute_force(queries: np.ndarray, corpus: np.ndarray, k: int, *, cosine: bool = False):
    scores = score_matrix(queries, corpus, cosine=cosine)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # equal scores: lower row first
    return np.take_along_axis(scores, order, axis=1), order


def dyadic(rng: np.random.Generator, rows: int, dim: int = 16) -> np.ndarray:
    return (rng.integers(-64, 65, size=(rows, dim)) / 64).astype(np.float32)


def assert_matches(result: TopK, queries, corpus, k: int, *, cosine: bool = False) -> None:
    ref_scores, ref_indices = brute_force(queries, corpus, k, cosine=cosine)
    assert result.scores.dtype == np.float32 and result.indices.dtype == np.int64
    np.testing.assert_array_equal(result.indices, ref_indices)
    np.testing.assert_array_equal(result.scores, ref_scores.astype(np.float32))


def assert_matches_up_to_rounding(result: TopK, queries, corpus, k: int, *, cosine: bool = False) -> None:
    """For real-valued data fp32 may swap near-ties that float64 separates: the true (float64) scores of
    the returned rows must still be the best k, in order, and the returned fp32 scores close to them."""
    ref_scores, _ = brute_force(queries, corpus, k, cosine=cosine)
    true_scores = np.take_along_axis(score_matrix(queries, corpus, cosine=cosine), result.indices, axis=1)
    assert all(len(set(row)) == len(row) for row in result.indices.tolist())
    np.testing.assert_allclose(true_scores, ref_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.scores, ref_scores, rtol=1e-5, atol=1e-5)


# --- equality with brute force ------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [1, 7, 50, 64, 200, 65536])
@pytest.mark.parametrize("k", [1, 10, 64, 150, 200, 500])
@pytest.mark.parametrize("query_batch", [5, 4096])
def test_matches_brute_force(chunk_size, k, query_batch):
    rng = np.random.default_rng(chunk_size * 1000 + k)
    queries, corpus = dyadic(rng, 13), dyadic(rng, 200)
    result = exact_top_k(queries, corpus, k, chunk_size=chunk_size, query_batch=query_batch)
    assert result.indices.shape == (13, min(k, 200))
    assert_matches(result, queries, corpus, k)


def test_gaussian_data_matches_brute_force():
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((20, 64)).astype(np.float32)
    corpus = rng.standard_normal((5000, 64)).astype(np.float32)
    result = exact_top_k(queries, corpus, 100, chunk_size=777)
    assert_matches_up_to_rounding(result, queries, corpus, 100)


def test_streaming_chunks_match_array():
    rng = np.random.default_rng(1)
    queries, corpus = dyadic(rng, 9), dyadic(rng, 300)
    bounds = [0, 0, 40, 41, 41, 200, 300]  # an empty chunk, a 1-row chunk, chunks above chunk_size
    stream = (corpus[a:b] for a, b in zip(bounds, bounds[1:]))  # a one-pass generator
    streamed = exact_top_k(queries, stream, 60, chunk_size=64)
    whole = exact_top_k(queries, corpus, 60, chunk_size=64)
    np.testing.assert_array_equal(streamed.indices, whole.indices)
    np.testing.assert_array_equal(streamed.scores, whole.scores)
    assert_matches(streamed, queries, corpus, 60)


def test_torch_tensors_are_accepted():
    rng = np.random.default_rng(2)
    queries, corpus = dyadic(rng, 4), dyadic(rng, 90)
    result = exact_top_k(torch.from_numpy(queries), [torch.from_numpy(corpus[:50]), torch.from_numpy(corpus[50:])],
                         20, chunk_size=32)
    assert_matches(result, queries, corpus, 20)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_fp16_memmap_on_disk_matches_fp32_array(tmp_path, similarity):
    rng = np.random.default_rng(3)
    queries, corpus = dyadic(rng, 11), dyadic(rng, 1000)  # multiples of 1/64 in [-1, 1] are exact in fp16
    path = tmp_path / "corpus.f16"
    stored = np.memmap(path, dtype=np.float16, mode="w+", shape=corpus.shape)
    stored[:] = corpus
    stored.flush()
    del stored
    memmap = np.memmap(path, dtype=np.float16, mode="r", shape=corpus.shape)
    from_disk = exact_top_k(queries, memmap, 100, chunk_size=300, similarity=similarity)
    in_memory = exact_top_k(queries, corpus, 100, chunk_size=300, similarity=similarity)
    np.testing.assert_array_equal(from_disk.indices, in_memory.indices)
    np.testing.assert_array_equal(from_disk.scores, in_memory.scores)
    if similarity == "dot":
        assert_matches(from_disk, queries, corpus, 100)


def test_progress_reports_rows_per_chunk():
    rng = np.random.default_rng(4)
    seen: list[int] = []
    exact_top_k(dyadic(rng, 3), dyadic(rng, 100), 5, chunk_size=30, progress=seen.append)
    assert seen == [30, 30, 30, 10]


def test_no_queries_gives_empty_result():
    rng = np.random.default_rng(5)
    result = exact_top_k(np.zeros((0, 16), np.float32), dyadic(rng, 7), 10)
    assert result.scores.shape == result.indices.shape == (0, 7)


# --- pinned ties -----------------------------------------------------------------------------------

def test_ties_straddle_k_and_chunk_boundaries_hand_checked():
    # Rows 95..99 score 2, every other row scores 1: the best five, then the lowest-numbered ties.
    corpus = np.ones((100, 2), np.float32)
    corpus[95:, 0] = 2
    queries = np.array([[1, 0]], np.float32)
    for chunk_size in (1, 7, 30, 64, 100, 1000):
        result = exact_top_k(queries, corpus, 10, chunk_size=chunk_size)
        assert result.indices.tolist() == [[95, 96, 97, 98, 99, 0, 1, 2, 3, 4]], chunk_size
        assert result.scores.tolist() == [[2.0] * 5 + [1.0] * 5]


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 100, 333, 1000, 5000])
@pytest.mark.parametrize("k", [1, 5, 17, 100, 999, 2000])
def test_many_ties_match_brute_force(chunk_size, k):
    rng = np.random.default_rng(chunk_size + k)
    corpus = rng.integers(-1, 2, size=(1500, 3)).astype(np.float32)  # 27 distinct rows: ties everywhere
    queries = rng.integers(-2, 3, size=(8, 3)).astype(np.float32)
    queries[0] = 0  # every score 0
    result = exact_top_k(queries, corpus, k, chunk_size=chunk_size)
    assert_matches(result, queries, corpus, k)
    assert result.indices[0].tolist() == list(range(min(k, 1500)))


def test_narrowed_chunks_and_their_redo_match_brute_force(monkeypatch, selection):
    """After the running top-k fills, chunks are cut to a guessed width; a chunk that brings more winners
    than guessed (here: a run of high scores after many low ones) is redone in full. Both match brute force."""
    from harness.search import exact as retrieval

    if selection == "faiss":
        pytest.skip("the torch selection's narrowing")
    widths = []
    original = retrieval._chunk_top_k
    monkeypatch.setattr(retrieval, "_chunk_top_k", lambda s, k, top=None: widths.append(k) or original(s, k, top))
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.integers(0, 64, 3000), rng.integers(100, 104, 300), rng.integers(0, 200, 700)])
    corpus = np.stack([values, np.ones_like(values)], axis=1).astype(np.float32)  # score = value (+ ties)
    queries = np.array([[1, 0], [1, 0.5], [0.5, 1], [0, 1]], dtype=np.float32)
    result = exact_top_k(queries, corpus, 150, chunk_size=100)
    assert_matches(result, queries, corpus, 150)
    first_narrow = next(i for i, w in enumerate(widths) if w < 150)
    assert 150 in widths[first_narrow:]  # narrowed, then redone in full when the high run arrives


def test_all_equal_scores_return_the_first_rows():
    queries = np.ones((3, 4), np.float32)
    result = exact_top_k(queries, np.ones((10_000, 4), np.float32), 1000, chunk_size=4096)
    assert (result.indices == np.arange(1000)).all()


# --- cosine -------------------------------------------------------------------------------------

def test_cosine_zero_vectors_score_zero():
    corpus = np.array([[0, 0], [3, 4], [0, 0], [-3, -4]], np.float32)
    queries = np.array([[0, 0], [6, 8]], np.float32)
    result = exact_top_k(queries, corpus, 4, similarity="cosine")
    assert result.indices.tolist() == [[0, 1, 2, 3], [1, 0, 2, 3]]
    np.testing.assert_allclose(result.scores, [[0, 0, 0, 0], [1, 0, 0, -1]], atol=1e-6)


def test_cosine_matches_brute_force_on_gaussian_data():
    rng = np.random.default_rng(6)
    queries = rng.standard_normal((10, 32)).astype(np.float32) * 5
    corpus = rng.standard_normal((3000, 32)).astype(np.float32) * rng.uniform(0.1, 10, (3000, 1)).astype(np.float32)
    result = exact_top_k(queries, corpus, 50, similarity="cosine", chunk_size=1000)
    assert_matches_up_to_rounding(result, queries, corpus, 50, cosine=True)


# --- properties (hypothesis) -----------------------------------------------------------------------

@st.composite
def integer_problem(draw):
    dim = draw(st.integers(1, 5))
    n_docs = draw(st.integers(1, 80))
    n_queries = draw(st.integers(1, 4))
    cell = st.integers(-2, 2)
    corpus = np.array(draw(st.lists(st.lists(cell, min_size=dim, max_size=dim), min_size=n_docs, max_size=n_docs)),
                      np.float32)
    queries = np.array(draw(st.lists(st.lists(cell, min_size=dim, max_size=dim),
                                     min_size=n_queries, max_size=n_queries)), np.float32)
    return queries, corpus, draw(st.integers(1, 100))


@st.composite
def power_of_two_norm_rows(draw, rows: int, dim: int):
    """Rows with 0, 1 or 4 entries of +-1: norms 0, 1, 2, so normalising them is exact in fp32."""
    out = np.zeros((rows, dim), np.float32)
    for row in out:
        nonzero = draw(st.sampled_from([0, 1, 4]))
        positions = draw(st.permutations(range(dim)))[:nonzero]
        row[positions] = draw(st.lists(st.sampled_from([-1, 1]), min_size=nonzero, max_size=nonzero))
    return out


@settings(max_examples=200, deadline=None)
@given(integer_problem(), st.integers(1, 100), st.integers(1, 4))
def test_property_equals_brute_force(problem, chunk_size, query_batch):
    queries, corpus, k = problem
    assert_matches(exact_top_k(queries, corpus, k, chunk_size=chunk_size, query_batch=query_batch), queries, corpus, k)


@settings(max_examples=200, deadline=None)
@given(integer_problem(), st.integers(1, 100), st.integers(1, 100))
def test_property_chunk_size_does_not_change_result(problem, chunk_a, chunk_b):
    queries, corpus, k = problem
    a = exact_top_k(queries, corpus, k, chunk_size=chunk_a)
    b = exact_top_k(queries, corpus, k, chunk_size=chunk_b)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(4, 8), st.integers(1, 60), st.integers(1, 70), st.integers(1, 70))
def test_property_cosine_equals_dot_on_normalised_data(data, dim, n_docs, k, chunk_size):
    queries = data.draw(power_of_two_norm_rows(3, dim))
    corpus = data.draw(power_of_two_norm_rows(n_docs, dim))
    normalise = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1)  # noqa: E731
    q, c = normalise(queries), normalise(corpus)
    dot = exact_top_k(q, c, k, chunk_size=chunk_size)
    for cosine in (exact_top_k(q, c, k, similarity="cosine", chunk_size=chunk_size),
                   exact_top_k(queries, corpus, k, similarity="cosine", chunk_size=chunk_size)):
        np.testing.assert_array_equal(cosine.indices, dot.indices)
        np.testing.assert_array_equal(cosine.scores, dot.scores)
    assert_matches(dot, q, c, k)


# --- errors ---------------------------------------------------------------------------------------

def test_dimension_mismatch():
    message = "query embeddings have dimension 384 but corpus embeddings have dimension 768"
    with pytest.raises(HarnessError, match=message):
        exact_top_k(np.zeros((2, 384), np.float32), np.zeros((10, 768), np.float32), 5)
    with pytest.raises(HarnessError, match="dimension 4 but corpus embeddings have dimension 3"):
        exact_top_k(np.zeros((2, 4), np.float32), [np.zeros((10, 4)), np.zeros((10, 3))], 5)


def test_nan_in_corpus_names_rows():
    corpus = np.ones((100, 4), np.float32)
    corpus[[70, 75, 99], 2] = np.nan
    message = r"corpus embeddings contain NaN or inf in 3 of rows 60\.\.99 \(first: row 70\)"
    with pytest.raises(HarnessError, match=message):  # chunks of 60: the first bad chunk is rows 60..99
        exact_top_k(np.ones((1, 4), np.float32), corpus, 5, chunk_size=60)


def test_inf_in_streamed_chunk_names_global_row():
    bad = np.ones((10, 4), np.float32)
    bad[3, 0] = np.inf
    with pytest.raises(HarnessError, match=r"in 1 of rows 10\.\.19 \(first: row 13\)"):
        exact_top_k(np.ones((1, 4), np.float32), [np.ones((10, 4)), bad], 5)


def test_nan_in_queries_names_rows():
    queries = np.ones((5, 4), np.float32)
    queries[4, 1] = -np.inf
    with pytest.raises(HarnessError, match=(
            r"query embeddings contain NaN or inf in 1 of rows 0\.\.4 \(first: row 4\)")):
        exact_top_k(queries, np.ones((10, 4), np.float32), 5)


def test_large_finite_values_are_not_flagged():
    corpus = np.full((4, 2), 3e38, np.float32)  # the sum overflows, yet every value is finite
    assert exact_top_k(np.zeros((1, 2), np.float32), corpus, 2).indices.tolist() == [[0, 1]]


@pytest.mark.parametrize("k", [0, -1])
def test_k_must_be_positive(k):
    with pytest.raises(HarnessError, match="k must be a positive integer"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((10, 4), np.float32), k)


@pytest.mark.parametrize("corpus", [np.zeros((0, 4), np.float32), [], [np.zeros((0, 4), np.float32)]],
                         ids=["empty-array", "no-chunks", "empty-chunks"])
def test_empty_corpus(corpus):
    with pytest.raises(HarnessError, match="corpus is empty"):
        exact_top_k(np.ones((1, 4), np.float32), corpus, 5)


def test_bad_similarity():
    with pytest.raises(HarnessError, match="similarity 'euclidean' unknown"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((10, 4), np.float32), 5, similarity="euclidean")


def test_bad_shapes_and_settings():
    with pytest.raises(HarnessError, match="query embeddings must be a 2-D array"):
        exact_top_k(np.ones(4, np.float32), np.ones((10, 4), np.float32), 5)
    with pytest.raises(HarnessError, match="corpus embeddings must be a 2-D array"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((2, 10, 4), np.float32), 5)
    with pytest.raises(HarnessError, match="chunk_size must be a positive integer"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((10, 4), np.float32), 5, chunk_size=0)
    with pytest.raises(HarnessError, match="not a torch device"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((10, 4), np.float32), 5, device="gpu0")


# --- CUDA (skipped on CPU-only machines) ------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tmp_path):
    rng = np.random.default_rng(7)
    queries, corpus = dyadic(rng, 50), dyadic(rng, 5000)
    path = tmp_path / "corpus.f16"
    stored = np.memmap(path, dtype=np.float16, mode="w+", shape=corpus.shape)
    stored[:] = corpus
    stored.flush()
    pinned = [torch.from_numpy(corpus[i:i + 700]).pin_memory() for i in range(0, 5000, 700)]
    cpu = exact_top_k(queries, corpus, 300, chunk_size=700)
    for source in (np.memmap(path, dtype=np.float16, mode="r", shape=corpus.shape), pinned):
        gpu = exact_top_k(queries, source, 300, chunk_size=700, device="cuda")
        np.testing.assert_array_equal(gpu.indices, cpu.indices)
        np.testing.assert_array_equal(gpu.scores, cpu.scores)


def test_bad_selection_is_named(selection):
    from harness.search import exact

    if selection == "torch":
        pytest.skip("once is enough")
    with pytest.raises(HarnessError, match="selection 'heap' unknown; allowed: auto, faiss, torch"):
        exact._heap_selection("heap", torch.device("cpu"))
    with pytest.raises(HarnessError, match="selection 'faiss' runs on the CPU only"):
        exact._heap_selection("faiss", torch.device("cuda"))


def test_search_scores_with_mkl_on_intel_and_onednn_elsewhere(monkeypatch):
    from harness.encode import kernels

    for vendor, expected in (("GenuineIntel", "aten"), ("AuthenticAMD", "onednn"), ("", "onednn")):
        monkeypatch.setattr(kernels, "cpu_vendor", lambda vendor=vendor: vendor)
        assert kernels.search_kernels("auto") == expected
    assert kernels.search_kernels("onednn") == "onednn" and kernels.search_kernels("aten") == "aten"


def test_both_selections_agree_on_real_valued_data():
    """Gaussian data (fp32 scores rounded, near-ties everywhere): FAISS's heaps and torch's topk select from the
    same scores, so they return the same rows in the same order, not only the same up to rounding."""
    pytest.importorskip("faiss")
    rng = np.random.default_rng(11)
    corpus, queries = rng.standard_normal((20_000, 32), np.float32), rng.standard_normal((64, 32), np.float32)
    for k in (1, 10, 1000):
        heaps = exact_top_k(queries, corpus, k, chunk_size=6000, selection="faiss")
        topk = exact_top_k(queries, corpus, k, chunk_size=6000, selection="torch")
        np.testing.assert_array_equal(heaps.indices, topk.indices)
        np.testing.assert_array_equal(heaps.scores, topk.scores)


def test_cuda_unavailable_is_a_harness_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(HarnessError, match="CUDA is not available"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((10, 4), np.float32), 5, device="cuda")


def test_unknown_cpu_kernels_names_every_choice(selection):
    if selection == "torch":
        pytest.skip("once is enough")
    with pytest.raises(HarnessError, match=r"unknown cpu_kernels 'x'; allowed: auto, onednn, aten"):
        exact_top_k(np.ones((1, 4), np.float32), np.ones((3, 4), np.float32), 2, cpu_kernels="x")
