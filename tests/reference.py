"""Plain NumPy (float64, loops) references for the losses, written from docs/methods.md."""
import numpy as np


def normalize(x):
    """Rows divided by their norm; a zero row stays zero."""
    x = np.asarray(x, dtype="float64")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def distances(x):
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def positives(d, y, i, strategy):
    idx = [j for j in range(len(y)) if j != i and y[j] == y[i]]
    if not idx or strategy == "all":
        return idx
    pick = min if strategy == "easy" else max
    best = pick(d[i, j] for j in idx)
    return [next(j for j in idx if d[i, j] == best)]


def negatives(d, y, i, strategy, threshold=None, fallback="nearest"):
    """The negatives of anchor `i`; semi-hard: the nearest with `d > threshold`, else the
    nearest or farthest negative, or none (`fallback`)."""
    idx = [k for k in range(len(y)) if y[k] != y[i]]
    if not idx or strategy == "all":
        return idx
    if strategy == "semihard":
        beyond = [k for k in idx if d[i, k] > threshold]
        if not beyond:
            if fallback == "none":
                return []
            if fallback == "farthest":
                return [max(idx, key=lambda k: d[i, k])]
        idx = beyond or idx
    return [min(idx, key=lambda k: d[i, k])]


def oriented(x, distance):
    """The named distance (`pair_matrix`), or minus the similarity: smaller is closer."""
    v = pair_matrix(x, distance)
    return -v if distance in ("cosine", "dot") else v


def contrastive(x, y, pos_margin=0.0, neg_margin=0.5, positive="all", negative="all", semihard_fallback="nearest",
                distance="euclidean"):
    d = oriented(x, distance)
    if distance in ("cosine", "dot"):  # hinges on similarities s = -d: [pos_margin - s]_+, [s - neg_margin]_+
        pos_margin, neg_margin = -pos_margin, -neg_margin
    terms = []
    for i in range(len(y)):
        p = positives(d, y, i, positive)
        if negative == "semihard":
            n = negatives(d, y, i, negative, min(d[i, j] for j in p), semihard_fallback) if p else []
        else:
            n = negatives(d, y, i, negative)
        if not p and not n:
            continue
        term = np.mean([max(d[i, j] - pos_margin, 0) ** 2 for j in p]) if p else 0.0
        term += np.mean([max(neg_margin - d[i, k], 0) ** 2 for k in n]) if n else 0.0
        terms.append(term)
    return np.mean(terms) if terms else 0.0


def triplet(x, y, margin=0.2, positive="all", negative="all", semihard_fallback="nearest", distance="euclidean"):
    d = oriented(x, distance)
    terms = []
    for i in range(len(y)):
        values = []
        for j in positives(d, y, i, positive):
            # mean over this positive's negatives, then over the anchor's positives
            hinges = [max(d[i, j] - d[i, k] + margin, 0) for k in negatives(d, y, i, negative, d[i, j], semihard_fallback)]
            if hinges:
                values.append(np.mean(hinges))
        if values:
            terms.append(np.mean(values))
    return np.mean(terms) if terms else 0.0


def npair(x, y, temperature=0.1, positive="all", negative="all", semihard_fallback="nearest"):
    x = normalize(x)
    d, s = distances(x), x @ x.T
    terms = []
    for i in range(len(y)):
        values = []
        for j in positives(d, y, i, positive):
            n = negatives(d, y, i, negative, d[i, j], semihard_fallback)
            if n:
                values.append(np.log1p(sum(np.exp((s[i, k] - s[i, j]) / temperature) for k in n)))
        if values:
            terms.append(np.mean(values))
    return np.mean(terms) if terms else 0.0


def multi_similarity(x, y, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    x = normalize(x)
    s = x @ x.T
    terms = []
    for i in range(len(y)):
        p = [j for j in range(len(y)) if j != i and y[j] == y[i]]
        n = [k for k in range(len(y)) if y[k] != y[i]]
        if not p or not n:
            continue
        max_neg, min_pos = max(s[i, n]), min(s[i, p])
        kept_p = [j for j in p if s[i, j] - epsilon < max_neg]
        kept_n = [k for k in n if s[i, k] + epsilon > min_pos]
        pos = np.log1p(sum(np.exp(-alpha * (s[i, j] - base)) for j in kept_p)) / alpha
        neg = np.log1p(sum(np.exp(beta * (s[i, k] - base)) for k in kept_n)) / beta
        terms.append(pos + neg)
    return np.mean(terms) if terms else 0.0


# Classification-style criteria (keras_dml/losses/classification.py): one sample at a time.

def _cross_entropy(logits, target):
    """`log sum_c exp(logits_c) - logits_target` for one sample."""
    top = max(logits)
    return top + np.log(sum(np.exp(v - top) for v in logits)) - logits[target]


def _cosines(x, proxies):
    """Cosines `(n, C)` or `(n, C, K)` between samples and each class's proxies."""
    return np.einsum("nd,c...d->nc...", normalize(x), normalize(proxies.reshape(-1, proxies.shape[-1])).reshape(proxies.shape))


def normalized_softmax(x, y, proxies, temperature=0.05):
    c = _cosines(x, proxies)
    return np.mean([_cross_entropy(c[i] / temperature, y[i]) for i in range(len(y))]) if len(y) else 0.0


def cosface(x, y, proxies, margin=0.35, scale=64.0):
    terms = []
    for i in range(len(y)):
        logits = scale * _cosines(x, proxies)[i]
        logits[y[i]] -= scale * margin
        terms.append(_cross_entropy(logits, y[i]))
    return np.mean(terms) if terms else 0.0


def arcface(x, y, proxies, margin=0.5, scale=64.0):
    """ArcFace; proxies `(C, K, D)` make it sub-center ArcFace (the best sub-center's cosine)."""
    c = _cosines(x, proxies)
    if c.ndim == 3:
        c = c.max(axis=2)
    terms = []
    for i in range(len(y)):
        cosine = c[i, y[i]]
        angle = np.arccos(np.clip(cosine, -1.0, 1.0))
        logits = scale * c[i].copy()
        logits[y[i]] = scale * (np.cos(angle + margin) if angle <= np.pi - margin else cosine - margin * np.sin(margin))
        terms.append(_cross_entropy(logits, y[i]))
    return np.mean(terms) if terms else 0.0


def soft_triple(x, y, proxies, la=20.0, gamma=0.1, margin=0.01, tau=0.0):
    c = _cosines(x, proxies)  # (n, C, K)
    num_classes, k = proxies.shape[:2]
    terms = []
    for i in range(len(y)):
        logits = []
        for cls in range(num_classes):
            weights = np.exp(c[i, cls] / gamma - np.max(c[i, cls] / gamma))
            similarity = np.sum(weights / weights.sum() * c[i, cls])
            logits.append(la * (similarity - (margin if cls == y[i] else 0.0)))
        terms.append(_cross_entropy(logits, y[i]))
    centers = normalize(proxies.reshape(-1, proxies.shape[-1])).reshape(proxies.shape)
    spread = sum(np.sqrt(2 + 1e-5 - 2 * centers[cls, a] @ centers[cls, b])
                 for cls in range(num_classes) for a in range(k) for b in range(a + 1, k))
    regularizer = spread / (num_classes * k * (k - 1)) if k > 1 else 0.0
    return np.mean(terms) + tau * regularizer if terms else 0.0


def proxy_nca(x, y, proxies, scale=1.0, distance="squared_euclidean"):
    x, p = normalize(x), normalize(proxies)
    terms = []
    for i in range(len(y)):
        if distance in ("cosine", "dot"):
            logits = [scale * (x[i] @ p[cls]) for cls in range(len(p))]
        else:
            power = 2 if distance == "squared_euclidean" else 1
            logits = [-scale * np.linalg.norm(x[i] - p[cls]) ** power for cls in range(len(p))]
        terms.append(_cross_entropy(logits, y[i]))
    return np.mean(terms) if terms else 0.0


# ---- the pair losses of keras_dml.losses.{circle, supcon, lifted, fastap, margin} and the memory ----

def pair_matrix(x, distance="euclidean"):
    """The `(n, m)` values of a named distance between normalised rows."""
    x = normalize(x)
    if distance in ("cosine", "dot"):
        return x @ x.T
    d = distances(x)
    return d ** 2 if distance == "squared_euclidean" else d


def _sets(y, i):
    return ([j for j in range(len(y)) if j != i and y[j] == y[i]], [k for k in range(len(y)) if y[k] != y[i]])


def _lse(values):
    return np.logaddexp.reduce(np.asarray(values, dtype="float64"))


def anchor_mean(terms, weights=None):
    """Mean of `{anchor: term}` over its anchors, each weighted by `weights[anchor]` (Keras's
    sum over batch size: divided by the number of anchors)."""
    if not terms:
        return 0.0
    return sum((1.0 if weights is None else weights[i]) * t for i, t in terms.items()) / len(terms)


def circle_terms(x, y, m=0.4, gamma=80.0, fixed=None):
    """Per-anchor circle loss; `fixed` (default `x`) gives the similarities of the
    stop-gradient weights `a_p`, `a_n` (so that finite differences match the gradient)."""
    s = pair_matrix(x, "cosine")
    s0 = s if fixed is None else pair_matrix(fixed, "cosine")
    terms = {}
    for i in range(len(y)):
        p, n = _sets(y, i)
        if p and n:
            lp = _lse([-gamma * max(1 + m - s0[i, j], 0) * (s[i, j] - (1 - m)) for j in p])
            ln = _lse([gamma * max(s0[i, k] + m, 0) * (s[i, k] - m) for k in n])
            terms[i] = np.logaddexp(0.0, lp + ln)
    return terms


def circle(x, y, m=0.4, gamma=80.0, fixed=None, weights=None):
    return anchor_mean(circle_terms(x, y, m, gamma, fixed), weights)


def supcon(x, y, temperature=0.1):
    s = pair_matrix(x, "cosine") / temperature
    terms = {}
    for i in range(len(y)):
        p, n = _sets(y, i)
        if p and any(y != y[i]):
            denominator = _lse([s[i, a] for a in p + n])
            terms[i] = -np.mean([s[i, j] - denominator for j in p])
    return anchor_mean(terms)


def ntxent(x, y, temperature=0.07):
    s = pair_matrix(x, "cosine") / temperature
    values = []
    for i in range(len(y)):
        p, n = _sets(y, i)
        for j in p:
            values.append(-(s[i, j] - _lse([s[i, j]] + [s[i, k] for k in n])))
    return np.mean(values) if values and len(set(y.tolist())) > 1 else 0.0


def lifted(x, y, neg_margin=1.0, pos_margin=0.0):
    d = pair_matrix(x, "euclidean")
    values = []
    for i in range(len(y)):
        for j in _sets(y, i)[0]:
            push = _lse([neg_margin - d[i, k] for k in _sets(y, i)[1]] + [neg_margin - d[j, l] for l in _sets(y, j)[1]])
            values.append(max(push + d[i, j] - pos_margin, 0) ** 2 / 2)
    return np.mean(values) if values and len(set(y.tolist())) > 1 else 0.0


def generalized_lifted(x, y, neg_margin=1.0, pos_margin=0.0):
    d = pair_matrix(x, "euclidean")
    terms = {}
    for i in range(len(y)):
        p, n = _sets(y, i)
        if p and n:
            terms[i] = max(_lse([d[i, j] - pos_margin for j in p]) + _lse([neg_margin - d[i, k] for k in n]), 0)
    return anchor_mean(terms)


def fastap(x, y, num_bins=10, distance="squared_euclidean"):
    d = pair_matrix(x, distance)
    top = 4.0 if distance == "squared_euclidean" else 2.0
    width = top / num_bins
    terms = {}
    for i in range(len(y)):
        p, n = _sets(y, i)
        if not p:
            continue
        pulse = [[max(1 - abs(d[i, j] - b * width) / width, 0) for b in range(num_bins + 1)] for j in range(len(y))]
        h_pos = np.sum([pulse[j] for j in p], axis=0)
        h_all = h_pos + (np.sum([pulse[k] for k in n], axis=0) if n else 0.0)
        big_pos, big_all = np.cumsum(h_pos), np.cumsum(h_all)
        ap = sum(h_pos[b] * big_pos[b] / big_all[b] for b in range(num_bins + 1) if h_pos[b] * big_pos[b] > 0)
        terms[i] = 1 - ap / len(p)
    return anchor_mean(terms)


def margin(x, y, margin=0.2, beta=1.2, nu=0.0):
    """Wu et al.'s margin loss over every triplet, divided by the number of non-zero hinges,
    plus `nu` times the mean boundary of the anchors; `beta` may hold one per class."""
    d = pair_matrix(x, "euclidean")
    total, active, boundaries = 0.0, 0, []
    for i in range(len(y)):
        b = beta[y[i]] if np.ndim(beta) else beta
        p, n = _sets(y, i)
        if p and n:
            boundaries.append(b)
        for j in p:
            for k in n:
                pull, push = max(d[i, j] - b + margin, 0), max(b - d[i, k] + margin, 0)
                total += pull + push
                active += int(pull > 0) + int(push > 0)
    return (total / active if active else 0.0) + (nu * np.mean(boundaries) if boundaries else 0.0)


def memory_queue(batches, memory_size):
    """A plain ring buffer: `(embeddings, labels, filled)` after writing `batches` of `(x, y)` in turn."""
    embeddings, labels = np.zeros((memory_size, batches[0][0].shape[1])), np.zeros(memory_size, "int64")
    position = filled = 0
    for x, y in batches:
        for row, label in zip(x, y):
            embeddings[position], labels[position] = row, label
            position = (position + 1) % memory_size
            filled = min(filled + 1, memory_size)
    return embeddings, labels, filled


def numeric_gradient(f, x, step=1e-6):
    """Central differences of a float64 function of `x`."""
    x = np.asarray(x, dtype="float64")
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (f(up) - f(down)) / (2 * step)
    return grad
