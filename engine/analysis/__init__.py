"""Proving a procedure before it goes live: scenario tests (`guichet test`), exhaustive
exploration (`guichet explore`) and load simulation (`guichet simulate --load`).

Every decision here is the engine's: scenarios run the real Engine, exploration asks
`Workflow.decide`, the load simulation follows `Workflow.timings` and the shared graph
module. Nothing in `engine` outside this package imports it.
"""
