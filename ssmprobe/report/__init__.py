"""Everything a folder of runs yields: Tables 1-2 and the run readers (`tables`), training
curves (`curves`), and the whole report with its cached analyses (`build`)."""
