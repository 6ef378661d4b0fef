"""scikit-learn's GridSearchCV over fastmlp.MLPClassifier, fanned out to a Dask cluster by joblib."""

import numpy as np
import pytest
from conftest import make_idx_dataset

pytest.importorskip("sklearn")
distributed = pytest.importorskip("distributed", reason='needs Dask: pip install "fastmlp[sweep]"')


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=2 on purpose
def test_grid_search_cv_runs_on_a_local_cluster(dask_cluster, tmp_path):
    import joblib
    from sklearn.model_selection import GridSearchCV

    import fastmlp

    ds = fastmlp.load_mnist(data_dir=make_idx_dataset(tmp_path / "tiny", n_train=200, n_test=20))
    grid = {"learning_rate_init": [0.01, 0.1], "hidden_layer_sizes": [(8,), (16,)]}
    search = GridSearchCV(fastmlp.MLPClassifier(solver="sgd", batch_size=32, max_iter=2, random_state=0), grid,
                          cv=2, n_jobs=-1)
    with distributed.Client(dask_cluster) as client, joblib.parallel_backend("dask"):
        with distributed.get_task_stream(client) as stream:
            search.fit(ds.x_train, ds.y_train)
        workers = set(client.scheduler_info()["workers"])
    ran_on = {task["worker"] for task in stream.data}
    assert ran_on and ran_on <= workers  # the fits ran on the cluster's worker processes
    assert len(stream.data) >= 8  # 4 candidates x 2 folds (and the refit)
    assert search.best_params_ in [dict(zip(grid, v)) for v in [(a, b) for a in grid["learning_rate_init"]
                                                                 for b in grid["hidden_layer_sizes"]]]
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.score(ds.x_test, ds.y_test) > 0.5
