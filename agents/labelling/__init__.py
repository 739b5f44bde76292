"""Human feedback: the ``rlhf-env label`` web app, its comparison sampler and its reports.

Why FastAPI (Starlette) with Jinja2 pages rendered on the server and uvicorn: they are small,
standard and well kept; Jinja2 escapes every value by default, so model outputs (untrusted
text) are shown as text; the pages are plain HTML forms with a few lines of JavaScript for the
keyboard shortcuts, so there is no JavaScript build, and a real browser can drive them in the
tests. The judgments go to :mod:`rlhf_env.data.judgments` (SQLAlchemy).

- :mod:`.policy`: which model to sample from (an initial model, a run folder, a checkpoint);
- :mod:`.sampling`: comparisons sampled through the environment, in batches;
- :mod:`.feed`: a background thread keeping comparisons ready, and who is shown what;
- :mod:`.security`: access token, allowed hosts, CSRF tokens;
- :mod:`.app`: the web app;
- :mod:`.report`: agreement between labellers and a reward model's accuracy on fresh labels.
"""
