"""The classical classifier: scaled features, an SVM, calibrated probabilities, mirror averaging.

`OCTSVMClassifier` follows scikit-learn's conventions (fit returns self, fitted attributes end in
`_`) and works on feature arrays of shape (n, 2, d) from `features.extract`: each scan with its
mirror image. Training sees both views; prediction averages the two views' probabilities.
"""

import weakref

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.kernel_approximation import Nystroem
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.validation import check_is_fitted

from baselines.options import EXACT_LIMIT, PARAM_GRID, SOLVERS
from octcore.data import row_parts


class RBFKernel:
    """The RBF kernel as an SVC callable: SVC then solves on the Gram matrix computed by BLAS in one go,
    about 20x faster than libsvm's own kernel on these 5,000-dimensional features. Computed in the
    features' float32 (scikit-learn's `rbf_kernel` upcasts in chunks, 2-3x slower): the squared
    distances are ~1e4 and gamma ~1e-4, so float32 changes a kernel value by less than 1e-6.

    At prediction SVC passes its whole training set as `b`, every time, and libsvm then reads only the
    columns of its support vectors. So once `rows` names them (OCTSVMClassifier sets it from the fitted SVC),
    only those rows are read: kept as one contiguous copy, with their squared norms, for as long as that array
    lives (a weak reference, so a freed array can never be mistaken for another). A scan's kernel row is then
    less memory traffic, the cost of a prediction. A fit (`a is b`) computes the whole Gram matrix and forgets
    `rows`, which belonged to the fit before. Nothing of this is saved with the model (`__getstate__`)."""

    def __init__(self, gamma: float):
        self.gamma = gamma
        self.rows: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"gamma": self.gamma}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def _columns(self, b: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(rows of b read, or None for all; those rows; their squared norms), kept while b is alive."""
        cached = getattr(self, "_cached", None)
        if cached is None or cached[0]() is not b or cached[1] is not self.rows:
            copy = None if self.rows is None else b[self.rows]  # fancy indexing: already a contiguous copy
            used = b if copy is None else copy
            cached = self._cached = (weakref.ref(b), self.rows, copy, np.einsum("ij,ij->i", used, used))
        return cached[1], b if cached[2] is None else cached[2], cached[3]  # b itself is never kept

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a is b:  # a fit's Gram matrix: whole, and any support vectors of an earlier fit are stale
            self.rows = None
        rows, used, norms = self._columns(b)
        # used @ a.T rather than a @ used.T: OpenBLAS streams the long row-major operand faster this way
        squared = np.einsum("ij,ij->i", a, a)[:, None] + norms[None, :] - 2 * (used @ a.T).T
        values = np.exp(-self.gamma * np.maximum(squared, 0))
        if rows is None:
            return values
        kernel = np.zeros((len(a), len(b)))  # float64, as libsvm reads it; columns it never reads stay 0
        kernel[:, rows] = values
        return kernel


def resolved_solver(solver: str, n_train: int) -> str:
    """The solver 'auto' means for this many training rows (scans and their speckled copies): the exact kernel SVM
    below EXACT_LIMIT, the Nystroem approximation from there."""
    if solver == "auto":
        solver = "rbf" if n_train < EXACT_LIMIT else "nystroem"
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose auto or one of {', '.join(SOLVERS)}")
    return solver


class OCTSVMClassifier(ClassifierMixin, BaseEstimator):
    """SVM on mirrored HOG/LBP feature pairs.

    solver: 'rbf' (exact kernel SVM, small data), 'nystroem' (RBF kernel approximation + linear
    SVM, scales to the full 84k dataset), 'linear', or 'auto'. gamma_scale multiplies 1/d.
    calibration_folds=0 skips calibration (no predict_proba; used by the hyperparameter search).
    """

    def __init__(
        self,
        solver: str = "auto",
        C: float = 10.0,
        gamma_scale: float = 0.5,
        n_components: int = 2000,
        calibration_folds: int = 3,
        random_state: int = 0,
    ):
        self.solver, self.C, self.gamma_scale = solver, C, gamma_scale
        self.n_components, self.calibration_folds, self.random_state = n_components, calibration_folds, random_state

    def _svm(self, n_train: int, n_features: int):
        solver = resolved_solver(self.solver, n_train)
        gamma = self.gamma_scale / n_features
        if solver == "rbf":
            return solver, make_pipeline(StandardScaler(), SVC(C=self.C, kernel=RBFKernel(gamma)))
        if solver == "nystroem":
            kernel = Nystroem(
                gamma=gamma, n_components=min(self.n_components, n_train), random_state=self.random_state
            )
            return solver, make_pipeline(StandardScaler(), kernel, LinearSVC(C=self.C / 100))
        return solver, make_pipeline(StandardScaler(), LinearSVC(C=self.C / 1000))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "OCTSVMClassifier":
        """X: (n, 2, d) feature pairs; groups: patient (or linked) ids, so calibration folds never split a patient."""
        X, y = np.asarray(X), np.asarray(y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        both = X.reshape(-1, X.shape[-1])  # each scan's views (the scan and its mirror image), side by side
        y, groups = np.repeat(y, X.shape[1]), np.repeat(groups, X.shape[1])
        self.solver_, svm = self._svm(X.shape[0], X.shape[-1])
        splits = None
        if self.calibration_folds:
            folds = StratifiedGroupKFold(self.calibration_folds, shuffle=True, random_state=self.random_state)
            splits = list(folds.split(both, y, groups))
        if self.solver_ == "nystroem":
            self.model_ = self._fit_by_parts(svm, both, y, splits)
        elif splits is None:
            self.model_ = svm.fit(both, y)
        else:
            self.model_ = CalibratedClassifierCV(svm, method="sigmoid", cv=splits, ensemble=False).fit(both, y)
        self.classes_, self.n_features_in_ = self.model_.classes_, X.shape[-1]
        return self

    def _fit_by_parts(self, svm: Pipeline, both: np.ndarray, y: np.ndarray, splits: list | None) -> Pipeline:
        """The Nystroem pipeline at full-dataset scale, in memory a small multiple of the features themselves.

        The scaling and the kernel map learn no labels, so they are fitted once on every training row, by parts
        (StandardScaler works in float64, which would double a whole dataset's features at once), and the rows
        are mapped part by part to n_components columns; only the linear SVM is refitted per calibration fold.
        Calibrating the whole pipeline instead, as for the exact SVM, copied and upcast the features in every fold:
        about 2.5 times their size again, past 24 GB on the full dataset.
        """
        scaler, kernel, linear = (step for _, step in svm.steps)
        for part in row_parts(len(both)):
            scaler.partial_fit(both[part])
        basis = np.random.default_rng(self.random_state).choice(len(both), kernel.n_components, replace=False)
        kernel.fit(scaler.transform(both[np.sort(basis)]))
        # float64, the type liblinear reads: the final fit then reads this array itself, not a converted copy.
        mapped = np.empty((len(both), kernel.n_components), dtype=np.float64)
        for part in row_parts(len(both)):
            mapped[part] = kernel.transform(scaler.transform(both[part]))
        if splits is not None:
            linear = CalibratedClassifierCV(linear, method="sigmoid", cv=splits, ensemble=False)
        return Pipeline([*svm.steps[:-1], ("svm", linear.fit(mapped, y))])

    def _fitted(self) -> Pipeline:
        """The fitted model, its exact SVM's kernel told which training rows are support vectors (see RBFKernel;
        set here, at prediction, because a loaded model's kernel does not save them)."""
        check_is_fitted(self)
        svm = self._decisions()[-1]
        if isinstance(svm, SVC) and isinstance(svm.kernel, RBFKernel):
            svm.kernel.rows = svm.support_
        return self.model_

    def _decisions(self) -> Pipeline:
        """The fitted scaler, kernel map and SVM without Platt's calibration: what gives decision values."""
        if isinstance(self.model_, CalibratedClassifierCV):  # exact and linear SVMs: the whole pipeline calibrated
            return self.model_.calibrated_classifiers_[0].estimator
        if isinstance(self.model_[-1], CalibratedClassifierCV):  # Nystroem: only its linear SVM calibrated
            return Pipeline([*self.model_.steps[:-1], ("svm", self.model_[-1].calibrated_classifiers_[0].estimator)])
        return self.model_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        self._fitted()
        decisions = self._decisions().decision_function(X.reshape(-1, X.shape[-1]))
        if decisions.ndim == 1:  # two classes: scikit-learn's one column, positive for classes_[1]
            decisions = np.stack([-decisions, decisions], axis=1)
        return decisions.reshape(X.shape[0], X.shape[1], -1).mean(axis=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.calibration_folds:
            raise AttributeError("fit with calibration_folds >= 2 to get probabilities")
        X = np.asarray(X)
        proba = self._fitted().predict_proba(X.reshape(-1, X.shape[-1])).reshape(X.shape[0], X.shape[1], -1)
        return proba.mean(axis=1)

    def scaled(self, X: np.ndarray) -> np.ndarray:
        """(n, d) the standardised features the SVM reads, averaged over each scan's two views: what the
        out-of-scope detector measures distances in."""
        X = np.asarray(X)
        scaled = self._decisions()[0].transform(X.reshape(-1, X.shape[-1]))
        return scaled.reshape(X.shape[0], X.shape[1], -1).mean(axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        scores = self.predict_proba(X) if self.calibration_folds else self.decision_function(X)
        return self.classes_[scores.argmax(axis=1)]


def search_hyperparameters(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    solver: str = "auto",
    grid: dict = PARAM_GRID,
    folds: int = 3,
    random_state: int = 0,
    scored: np.ndarray | None = None,
) -> dict:
    """The grid point with the best patient-grouped CV accuracy of the uncalibrated SVM.

    Calibration is left out of the search (it would refit every candidate 4 times); the chosen
    values are then fitted once with calibration. scored: the rows a held-out fold scores (default all; every
    row is still trained on where its fold trains). Returns {"C": ..., "gamma_scale": ..., "cv_accuracy": ...}.
    """
    # 'auto' decided once, for every training row: a fold holds two thirds of them, and the search must tune the
    # solver that will be fitted (the exact SVM's best C and gamma are not the Nystroem pipeline's)
    solver = resolved_solver(solver, len(X))
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=random_state)
    if scored is not None:  # e.g. a scan's speckled copies trained on, but not scored
        scored = np.asarray(scored, dtype=bool)
        if scored.shape != (len(X),):
            raise ValueError(f"scored has {scored.shape} entries for {len(X)} rows")
        cv = [(train, test[scored[test]]) for train, test in cv.split(X, y, groups)]
    search = GridSearchCV(
        OCTSVMClassifier(solver, calibration_folds=0, random_state=random_state),
        grid,
        cv=cv,
        scoring="accuracy",
        n_jobs=-1,
    ).fit(np.asarray(X), np.asarray(y), groups=groups)
    return {**search.best_params_, "cv_accuracy": float(search.best_score_)}


def fixed_cv_accuracy(X: np.ndarray, y: np.ndarray, folds, C: float = 10.0, gamma_scale: float = 0.5) -> float:
    """Accuracy of the uncalibrated exact RBF SVM with fixed C and gamma over given (train, test) folds: the
    cheap, comparable score of feature settings or of fold schemes (patient-level against image-level)."""
    predicted = np.zeros_like(y)
    for train, test in folds:
        model = OCTSVMClassifier("rbf", C=C, gamma_scale=gamma_scale, calibration_folds=0)
        predicted[test] = model.fit(X[train], y[train]).predict(X[test])
    return float(np.mean(predicted == y))
