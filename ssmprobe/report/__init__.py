"""Everything a folder of runs yields. Reading it: the run folders (`runs`) and the analyses
cached beside each run (`cache`, `zoo_runs` for the bundled checkpoints). Writing it: Tables 1-2
(`tables`), training curves (`curves`), the other figures (`figures`), the findings in sentences
(`findings`), report.md (`sections`) and report.html (`html`); `build` runs them all, keeping its
own record in `state`; `model` is the report on a user's model."""
