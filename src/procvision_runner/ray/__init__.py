"""ProcVision on a Ray cluster: the Runner as a Ray Serve deployment (extra `ray`).

`procvision_runner.ray.deployment.build_app(store_root, user_config)` gives the application to
`serve.run` (needs `ray[serve]`); `procvision_runner.ray.node.NodeRunner` is one node's Runner
and store, and `procvision_runner.ray.session.CarriedSession` runs one product's steps with the
session's state carried. The submodules that need Ray import it themselves, so the node logic
runs (and is tested) without Ray.
"""
