import pytest

from dashkit import Dashboard, lab_store


@pytest.fixture
def dashboard(store_url, tmp_path):
    runs = lab_store(store_url, tmp_path)
    d = Dashboard(store_url)
    d.runs = runs
    d.url = store_url
    yield d
    d.stop()
